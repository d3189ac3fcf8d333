/** Flags shared by fioup commands. */
import type { FlagSpec } from "../../lib/cli/command.ts";

export const sotaDirFlag = {
  "sota-dir": {
    type: "string",
    description: "Directory with sota.toml (default $FIOUP_SOTA_DIR or $FIOUP_ROOT/var/sota)",
    placeholder: "DIR",
  },
} as const satisfies Record<string, FlagSpec>;
