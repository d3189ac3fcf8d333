/**
 * When each top-level TUF role's signed metadata expires, read from what devices are served.
 * Devices refuse a role past that date. Snapshot and timestamp are re-signed by the gateway on its
 * timer; root and targets only with their own keys, which the ceremony takes offline
 * (docs/keys.md), so a person must sign them again before the date. /metrics shows every role's
 * date (routes/metrics.ts) and the dashboard warns of root and targets (ui/attention.tsx): both
 * read it here, so both say the same.
 *
 * @module
 */
import { ROLE_NAMES, type RoleName } from "../../lib/tuf/metadata.ts";
import type { TufService } from "../env.ts";

/** The roles whose keys may be offline: re-signing them takes a person (docs/keys.md). */
export const OFFLINE_ROLES = ["root", "targets"] as const satisfies readonly RoleName[];

/** From how many days before root or targets expires a person is told (docs/keys.md: a month ahead, to plan the ceremony). */
export const CEREMONY_NOTICE_DAYS = 30;

export interface TufExpiry {
  role: RoleName;
  /** As signed (ISO 8601). */
  expires: string;
  /** The same, in ms since the epoch. */
  ms: number;
}

/**
 * The expiry of each of `roles`' current metadata, as served; a role that cannot be read now (the
 * database unreachable: /metrics and the dashboard say that on their own) is left out. One read of
 * the TUF storage per role (cached a second, gateway/store/tuf-cache.ts).
 */
export async function tufExpiries(tuf: Pick<TufService, "metadata">, roles: readonly RoleName[] = ROLE_NAMES): Promise<TufExpiry[]> {
  const out: TufExpiry[] = [];
  for (const role of roles) {
    try {
      const bytes = await tuf.metadata(`${role}.json`);
      const expires = bytes && (JSON.parse(new TextDecoder().decode(bytes)) as { signed?: { expires?: string } }).signed?.expires;
      const ms = expires ? Date.parse(expires) : NaN;
      if (expires && Number.isFinite(ms)) out.push({ role, expires, ms });
    } catch {
      // the database unreachable: said where it is asked (gateway_database_up, the dashboard)
    }
  }
  return out;
}
