import { groupMembersCommand } from "./_groups.ts";

export default groupMembersCommand("remove", "Remove devices from a static group");
