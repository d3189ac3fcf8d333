/**
 * `ROLE=VALUE` command-line values (`--key root=alice.pub.json`, `--threshold root=2`,
 * `--tuf-expiry timestamp=1h`), read one way by every command that takes them.
 *
 * @module
 */
import { UsageError, asUsage } from "../../lib/cli/command.ts";
import { ROLE_NAMES, type RoleName } from "../../lib/tuf/metadata.ts";
import { InvalidDurationError, parseDuration } from "../admin/duration.ts";

/**
 * Splits `ROLE=VALUE`.
 *
 * @example
 * ```ts
 * parseRoleValue("root=alice.pub.json", "--key"); // ["root", "alice.pub.json"]
 * ```
 * @throws {UsageError} If ROLE is not root, targets, snapshot or timestamp, or VALUE is empty.
 */
export function parseRoleValue(value: string, flag: string): [RoleName, string] {
  const eq = value.indexOf("=");
  const role = value.slice(0, eq) as RoleName;
  if (eq < 1 || !ROLE_NAMES.includes(role) || eq === value.length - 1)
    throw new UsageError(`${flag} takes ROLE=VALUE with ROLE one of ${ROLE_NAMES.join(", ")}: got "${value}"`);
  return [role, value.slice(eq + 1)];
}

/**
 * Reads `--tuf-expiry ROLE=DURATION` values into lifetimes in seconds.
 *
 * @example
 * ```ts
 * parseTufExpiries(["timestamp=1h", "snapshot=2d"]); // { timestamp: 3600, snapshot: 172800 }
 * ```
 * @throws {UsageError} For a bad role or duration, or a role given two durations.
 */
export function parseTufExpiries(values: string[]): Partial<Record<RoleName, number>> {
  const out: Partial<Record<RoleName, number>> = {};
  for (const v of values) {
    const [role, duration] = parseRoleValue(v, "--tuf-expiry");
    out[role] = onePerRole(out[role], asUsage([InvalidDurationError], () => parseDuration(duration), `--tuf-expiry ${role}: `), "--tuf-expiry", role);
  }
  return out;
}

/**
 * `value` for `role`, unless the flag gave that role another one already (`--tuf-expiry
 * timestamp=1h --tuf-expiry timestamp=2h`): the user meant one of them, and the last silently winning
 * might put the wrong lifetime or threshold into signed metadata. The same value twice is harmless.
 *
 * @throws {UsageError} If `before` is set and differs from `value`.
 */
export function onePerRole<T>(before: T | undefined, value: T, flag: string, role: RoleName): T {
  if (before !== undefined && before !== value) throw new UsageError(`${flag} ${role} given twice with different values: it takes one per role`);
  return value;
}
