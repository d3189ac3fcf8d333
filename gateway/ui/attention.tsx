/* @jsxImportSource hono/jsx */
/**
 * What needs a person, said on the dashboard before it hurts: the served TLS certificate or the
 * factory CA near its end (pki/cert-expiry.ts), writes failing for want of disk space (disk-full.ts),
 * the signer failing to re-sign the timestamp (ota/refresh-timer.ts), root metadata near
 * expiry, which takes its offline keys, and targets when no key the gateway holds re-signs them
 * (ota/expiries.ts, docs/keys.md), and the database out of reach. Each was said only in the log and
 * on /metrics, which an operator watching the dashboard may never read. The overview lists them
 * with what to do; every other page carries a one-line banner pointing there; nothing shows while
 * all is well.
 *
 * Cheap, as the overview is loaded every 5 seconds per open tab: the certificate's end and the disk
 * spell are in memory, root and targets are two reads of the TUF storage (cached a second), the
 * targets key is looked for only within a month of targets' expiry, free space is asked only during
 * a disk spell, and the database is probed only when the page's own read failed. Nothing is per
 * device.
 *
 * @module
 */
import type { Gateway } from "../env.ts";
import { CEREMONY_NOTICE_DAYS, OFFLINE_ROLES, tufExpiries, type TufExpiry } from "../ota/expiries.ts";
import type { TufSigning } from "../ota/repo.ts";
import type { RefreshFailure } from "../ota/refresh-timer.ts";
import { caExpiryWarning, certificateExpiryWarning } from "../pki/cert-expiry.ts";
import { StoreUnavailableError } from "../store/types.ts";

const DAY = 86_400_000;

export interface Attention {
  /** Stable, for tests and anchors: "certificate", "ca", "disk", "tuf-root", "tuf-targets", "tuf-signing", "database". */
  id: string;
  /** A few words for the banner ("TLS certificate"). */
  title: string;
  /** What is wrong and what to do, in sentences. */
  text: string;
  /** bad: it hurts now; warn: it will. */
  severity: "bad" | "warn";
}

/**
 * What the TUF part says of root or targets expiring at `e`, or undefined while nothing needs a
 * person. Root takes its offline keys: said from CEREMONY_NOTICE_DAYS before. Targets the same while
 * the gateway holds no targets key (`known` not held, or an Error: its keys cannot be read); while it holds one, its timer re-signs
 * targets `marginMs` before expiry (checking every few minutes, on the signer replica, which
 * another takes over within about 1.3 leases), so a short --tuf-expiry is no concern: only once
 * half the margin has gone by without a new signature is re-signing failing rather than late.
 */
export function tufExpiryAttention(e: TufExpiry, known?: TufSigning | Error, now = Date.now()): Attention | undefined {
  const left = e.ms - now;
  const unreadable = known instanceof Error ? known : undefined;
  const signing = known instanceof Error ? undefined : known;
  const online = e.role === "targets" && signing?.held === true;
  if (left > CEREMONY_NOTICE_DAYS * DAY || (online && left > signing.marginMs / 2)) return undefined;
  const when = left <= 0 ? `expired at ${e.expires}: devices take no update until it is signed again` : `expires at ${e.expires} (in ${Math.ceil(left / DAY)} days): devices take no update after that`;
  const todo =
    e.role === "root"
      ? "sign a new version with a threshold of the offline root keys before then (gateway keys init-root, sign-root, push-root: docs/keys.md)"
      : online
        ? `the gateway holds the targets key but has not re-signed it, due since ${new Date(e.ms - signing.marginMs).toISOString()}: its log says why ("cannot refresh TUF metadata")`
        : unreadable
          ? `the gateway cannot read its keys to re-sign it (${unreadable.message}): mend the data dir's tuf/keys/ before then (docs/keys.md)`
          : "put a targets key file in the data dir's tuf/keys/ before then: the gateway re-signs targets with it within minutes (docs/keys.md)";
  return { id: `tuf-${e.role}`, title: `TUF ${e.role} metadata`, text: `The TUF ${e.role} metadata ${when}; ${todo}.`, severity: left <= 0 ? "bad" : "warn" };
}

/**
 * The TUF part: root and targets near expiry. Whether the gateway holds the targets key is asked
 * only once targets is within the notice (a look at the keys dir, not at every overview load); a
 * metadata read that fails leaves the role out (tufExpiries), a keys dir that cannot be read is
 * said with its error.
 */
async function tufAttention(gw: Gateway, now: number): Promise<(Attention | undefined)[]> {
  const out: (Attention | undefined)[] = [];
  for (const e of await tufExpiries(gw.tuf, OFFLINE_ROLES)) {
    if (e.role === "targets" && e.ms - now <= CEREMONY_NOTICE_DAYS * DAY) {
      // A keys dir that cannot be read (not a dir, no permission) signs nothing either: the notice says why.
      const signing = await gw.tuf.signing("targets").catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
      out.push(tufExpiryAttention(e, signing, now));
    } else out.push(tufExpiryAttention(e, undefined, now));
  }
  return out;
}

/** What the certificate part says: the log's words (pki/cert-expiry.ts), without its prefix. */
function certificateAttention(notAfter: number, own: boolean, now: number): Attention | undefined {
  const line = certificateExpiryWarning(new Date(notAfter), own, now)?.replace(/^gateway: warning: the /, "The ");
  return line === undefined ? undefined : { id: "certificate", title: "TLS certificate", text: `${line}.`, severity: notAfter <= now ? "bad" : "warn" };
}

/** What the factory CA part says: the log's words, without its prefix. */
function caAttention(notAfter: number, now: number): Attention | undefined {
  const line = caExpiryWarning(new Date(notAfter), now)?.replace(/^gateway: warning: the /, "The ");
  return line === undefined ? undefined : { id: "ca", title: "Factory CA", text: `${line}.`, severity: notAfter <= now ? "bad" : "warn" };
}

async function diskAttention(gw: Gateway, since: number): Promise<Attention> {
  const where = await gw.diskFull.freeSpaceText();
  return {
    id: "disk",
    title: "disk space",
    text:
      `Writes have failed for want of disk space since ${new Date(since).toISOString()} (${where}): device reports, registrations and uploads are refused ` +
      "and sent again later. Free space there (gateway registry gc --untargeted removes what no target uses); the gateway takes writes again by itself.",
    severity: "bad",
  };
}

/**
 * The signer failing to re-sign the timestamp (and snapshot), from the refresh timer's last error:
 * bad once the served timestamp has expired (devices refuse it), warn until then.
 */
export function signingAttention(failure: RefreshFailure, timestamp: TufExpiry | undefined, now = Date.now()): Attention {
  const expired = timestamp !== undefined && timestamp.ms <= now;
  const when =
    timestamp === undefined ? "" : expired ? ` The timestamp expired at ${timestamp.expires}: devices take no update until it is signed again.` : ` Devices refuse the timestamp once it expires, at ${timestamp.expires}.`;
  return {
    id: "tuf-signing",
    title: "TUF signing",
    text:
      `The gateway has failed to re-sign its TUF metadata since ${new Date(failure.since).toISOString()}: ${failure.error}.${when} ` +
      "A key file of tuf/keys/ moved away or damaged is the usual cause: put it back or restore it from a backup (docs/keys.md); the gateway tries again every few seconds and says in its log when it signs again.",
    severity: expired ? "bad" : "warn",
  };
}

/** The database out of reach, as the store said it (a StoreUnavailableError). */
export function databaseAttention(err: StoreUnavailableError): Attention {
  return {
    id: "database",
    title: "database",
    text:
      `The gateway's database is out of reach ("${err.message}"). Devices are answered 503 and try again; these pages show the fleet again once it answers. ` +
      "Check that the database server runs and that the gateway reaches it (its log says since when it does not).",
    severity: "bad",
  };
}

/**
 * Whether the database answers, asked only after a page's read failed with 503: the same read as
 * /healthz, the store's error kept when it is the database's.
 */
export async function databaseDown(gw: Gateway): Promise<StoreUnavailableError | undefined> {
  try {
    await gw.store.countDevices();
    return undefined;
  } catch (err) {
    if (err instanceof StoreUnavailableError) return err;
    throw err;
  }
}

/**
 * Everything that needs a person now, worst first; empty when all is well. `database`: the
 * store's error when a read of this page found it unreachable (the TUF reads are then skipped).
 */
export async function needsAttention(gw: Gateway, database?: StoreUnavailableError, now = Date.now()): Promise<Attention[]> {
  const out: (Attention | undefined)[] = [];
  if (database) out.push(databaseAttention(database));
  const since = gw.diskFull.since;
  if (since !== undefined) out.push(await diskAttention(gw, since));
  const notAfter = gw.metrics.tlsCertificateNotAfter;
  // The gateway's own certificate is renewed by a restart; --tls-cert's is the operator's to renew.
  const own = gw.metrics.tlsCertificateOwn ?? false;
  const caEnd = gw.metrics.caCertificateNotAfter;
  // As in the log (pki/cert-expiry.ts): a served certificate that ends no earlier than the CA is said by the CA's line alone.
  if (notAfter !== undefined && (caEnd === undefined || notAfter < caEnd)) out.push(certificateAttention(notAfter, own, now));
  if (caEnd !== undefined) out.push(caAttention(caEnd, now));
  if (!database) out.push(...(await tufAttention(gw, now)));
  const failing = gw.tufFailing?.();
  if (failing) out.push(signingAttention(failing, (await tufExpiries(gw.tuf, ["timestamp"]))[0], now));
  const found = out.filter((a): a is Attention => a !== undefined);
  return [...found.filter((a) => a.severity === "bad"), ...found.filter((a) => a.severity === "warn")];
}

/** The overview's list: each item with what to do. Nothing when all is well. */
export function AttentionList({ items }: { items: Attention[] }) {
  if (!items.length) return null;
  return (
    <section id="attention" aria-labelledby="h-attention">
      <h2 id="h-attention">Needs attention</h2>
      {items.map((a) => (
        <p class={`msg ${a.severity}`} data-attention={a.id}>
          <strong>{a.severity === "bad" ? "Now: " : "Soon: "}</strong>
          {a.text}
        </p>
      ))}
    </section>
  );
}

/** The line every other page carries while something needs a person: what, and a link to the overview's list. */
export function AttentionBanner({ items }: { items: Attention[] }) {
  if (!items.length) return null;
  const bad = items.some((a) => a.severity === "bad");
  return (
    <p class={`banner ${bad ? "bad" : "warn"}`} id="attention-banner">
      <a href="/ui/#attention">{`Needs attention: ${items.map((a) => a.title).join(", ")}. See the overview.`}</a>
    </p>
  );
}
