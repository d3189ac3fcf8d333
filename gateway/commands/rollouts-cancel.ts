import { rolloutActionCommand } from "./_rollouts.ts";

export default rolloutActionCommand("cancel");
