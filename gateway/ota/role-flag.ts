/**
 * `ROLE=VALUE` command-line values (`--key root=alice.pub.json`, `--threshold root=2`,
 * `--tuf-expiry timestamp=1h`), read one way by every command that takes them.
 *
 * @module
 */
import { UsageError } from "../../lib/cli/command.ts";
import { ROLE_NAMES, type RoleName } from "../../lib/tuf/metadata.ts";
import { durationFlag } from "../../lib/cli/flag-values.ts";

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
 * The shortest lifetime `--tuf-expiry` takes, for every role, taken from how the gateway re-signs.
 * Every role is re-signed by the signer's timer a quarter of its lifetime before it expires when
 * the gateway holds its keys (TufRepo's margin, gateway/ota/repo.ts), and its expiry date is
 * written in whole seconds counted from the start of the second it is signed in (expiresAt,
 * lib/tuf/metadata.ts), so a fresh signature is valid for as little as its lifetime less 1 s. That
 * must still be longer than the margin, or the metadata is due again (or expired, for a device)
 * the moment it is signed: L - 1 > L / 4, so L > 4/3 s, and durations are whole seconds. A role
 * whose key is offline (root after the ceremony) is not re-signed at all until a person does it:
 * this is the least any role can live, not a lifetime to choose.
 */
export const MIN_TUF_EXPIRY_SECONDS = 2;

/**
 * Reads `--tuf-expiry ROLE=DURATION` values into lifetimes in seconds.
 *
 * @example
 * ```ts
 * parseTufExpiries(["timestamp=1h", "snapshot=2d"]); // { timestamp: 3600, snapshot: 172800 }
 * ```
 * @throws {UsageError} For a bad role or duration, one under {@link MIN_TUF_EXPIRY_SECONDS}, or a role given two durations.
 */
export function parseTufExpiries(values: string[]): Partial<Record<RoleName, number>> {
  const out: Partial<Record<RoleName, number>> = {};
  for (const v of values) {
    const [role, duration] = parseRoleValue(v, "--tuf-expiry");
    const seconds = durationFlag(`--tuf-expiry ${role}`, duration);
    if (seconds < MIN_TUF_EXPIRY_SECONDS)
      throw new UsageError(
        `--tuf-expiry ${role}=${duration} is too short: give at least ${MIN_TUF_EXPIRY_SECONDS}s (metadata expires on a whole second and is re-signed a quarter of its lifetime before, ` +
          "so a shorter lifetime is expired or due again as soon as it is signed)",
      );
    out[role] = onePerRole(out[role], seconds, "--tuf-expiry", role);
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
