import { groupMembersCommand } from "./_groups.ts";

export default groupMembersCommand("add", "Add devices to a static group (every uuid must be a registered device, not revoked)");
