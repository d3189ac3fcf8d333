/** preload's commands: one file each, loaded when run. */
import type { Command } from "../../lib/cli/command.ts";

export const commands = {
  assemble: () => import("./assemble.ts"),
} satisfies Record<string, () => Promise<{ default: Command<any> }>>;
