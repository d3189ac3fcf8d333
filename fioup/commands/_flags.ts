/** Flags and arguments shared by fioup commands. */
import { UsageError, type FlagSpec } from "../../lib/cli/command.ts";
import { checkFlagValues } from "../../lib/cli/flag-values.ts";
import { TargetVersion } from "../../lib/api/target.ts";

export const sotaDirFlag = {
  "sota-dir": {
    type: "string",
    description: "Directory with sota.toml (default $FIOUP_SOTA_DIR or $FIOUP_ROOT/var/sota)",
    placeholder: "DIR",
    allowEmpty: true, // refused in words of its own, as an empty FIOUP_SOTA_DIR is (fioup/config.ts)
  },
} as const satisfies Record<string, FlagSpec>;

/** Overrides the install gate (maintenance window, update locks: fioup/update/hold.ts). */
export const forceHoldFlag = {
  force: {
    type: "boolean",
    description: "Install now even outside the maintenance window (or before the clock is set) or while update locks are held (else the install waits: exit 14)",
  },
} as const satisfies Record<string, FlagSpec>;

/**
 * The `[version]` of fetch and update, checked before anything is asked of the gateway: "abc" can
 * name no target, so it is bad usage (exit 2), not "no matching target" (22) after a check.
 *
 * @throws {UsageError} More than one argument, or one that is not a version.
 */
export function versionArg(args: readonly string[]): string | undefined {
  if (args.length > 1) throw new UsageError("expected at most one version");
  checkFlagValues("version", TargetVersion, args);
  return args[0];
}
