/** Flags shared by fioup commands. */
import type { FlagSpec } from "../../lib/cli/command.ts";

export const sotaDirFlag = {
  "sota-dir": {
    type: "string",
    description: "Directory with sota.toml (default $FIOUP_SOTA_DIR or $FIOUP_ROOT/var/sota)",
    placeholder: "DIR",
  },
} as const satisfies Record<string, FlagSpec>;

/** Overrides the install gate (maintenance window, update locks: fioup/update/hold.ts). */
export const forceHoldFlag = {
  force: {
    type: "boolean",
    description: "Install now even outside the maintenance window or while update locks are held (else the install waits: exit 14)",
  },
} as const satisfies Record<string, FlagSpec>;
