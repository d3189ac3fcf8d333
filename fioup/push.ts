/**
 * Between update checks the daemon waits for news instead of sleeping blind: it holds a long
 * poll (GET /repo/wait) that the gateway answers as soon as a timestamp newer than the one this
 * device trusts is signed, so a publish reaches the device in about a second rather than at its
 * next poll. The poll interval stays the upper bound: without news, the daemon checks anyway.
 * A gateway without push (404) means plain sleeping; a dropped connection, or a proxy's 502-504
 * while no replica is up, is retried after a random 1 to 5 s, so a replica restart does not bring every
 * device back in the same instant.
 *
 * After a cycle the network failed, the daemon waits out a backoff that grows toward the poll
 * interval, and its events wait with it; but this wait may see the gateway come back before that.
 * So then (`untilBack`) a wait that finds the gateway out of reach asks again with a hold of 0,
 * which the gateway answers at once, and its first 200 or 204 ends the wait ("back"): the device
 * checks, and sends what it queued, within seconds of the gateway's return rather than minutes.
 * Only a gateway this wait saw away counts: one that answers from the first request (a download cut
 * by the link, not the gateway) leaves the backoff as it was. No random delay is added before that
 * check: the requests that find the gateway back are already spread by the 1 to 5 s between them,
 * so a restarted gateway sees a fleet's checks over those seconds, more spread than the checks a
 * publish starts, which every held wait hears of in the same instant.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { backoffDelay, randomBetween, sleep } from "../lib/net/backoff.ts";
import { join } from "node:path";
import { isCertificateTimeError, proxyWithoutBackend } from "../lib/net/why.ts";
import type { DeviceClient } from "./device-client.ts";

/** The longest single hold; the gateway accepts up to 60 s and cuts idle connections later. */
const HOLD_SECONDS = 55;

/** The version of the timestamp this device verified last (0 before its first check). */
export function trustedTimestampVersion(storagePath: string): number {
  try {
    const doc = JSON.parse(readFileSync(join(storagePath, "tuf", "timestamp.json"), "utf8")) as { signed?: { version?: unknown } };
    return typeof doc.signed?.version === "number" ? doc.signed.version : 0;
  } catch {
    return 0;
  }
}

/**
 * The newest timestamp version the gateway announced, per state dir, and how many checks since
 * have not taken it. A check that could not take it (a clock ahead of its expiry, metadata the
 * device refuses) leaves the trusted version behind, and asking with that one again is answered
 * at once: the daemon checked back to back, tens of times a second (370 checks in 10 s with a
 * clock 3 days ahead). So each such miss waits before asking again, 1 s, then 2, 4, ... up to the
 * poll interval: a check caught once by a view changing under it on another replica (docs/signed-views.md, "Across replicas") is
 * retried within a second or two, one that keeps failing settles to one check per poll.
 */
const announced = new Map<string, { version: number; misses: number }>();

/** The version a 200 of /repo/wait announces (`{"version":N}`), or 0. */
function announcedVersion(body: string): number {
  try {
    const v = (JSON.parse(body) as { version?: unknown }).version;
    return typeof v === "number" ? v : 0;
  } catch {
    return 0;
  }
}

/** A random 1 to 5 s before asking again after a failure, so devices come back spread out. */
const retryMs = () => randomBetween(1000, 5000);

export interface WaitOptions {
  /** The last check failed by the network: end the wait, "back", once the gateway answers again after this wait found it away. */
  untilBack?: boolean;
}

/**
 * Waits up to `ms` for the gateway to say there is something new. Returns "news" as soon as it
 * does, "back" when `untilBack` and the gateway answers again, "timeout" when the time is up (or
 * the gateway has no push), "aborted" on `signal`.
 */
export async function waitForNews(
  client: DeviceClient | undefined,
  storagePath: string,
  ms: number,
  signal: AbortSignal,
  o: WaitOptions = {},
): Promise<"news" | "back" | "timeout" | "aborted"> {
  const deadline = performance.now() + ms; // monotonic: NTP setting the clock neither ends nor stretches the wait
  const left = () => deadline - performance.now();
  // A request of this wait found the gateway out of reach (with `untilBack`: asking to hear it is back).
  let away = false;
  while (!signal.aborted && left() > 0) {
    if (!client) {
      await sleep(left(), signal);
      break;
    }
    const after = trustedTimestampVersion(storagePath);
    const news = announced.get(storagePath);
    if (news && after < news.version) {
      // The news was not taken: wait longer after each miss before the answer that comes at once.
      await sleep(backoffDelay(++news.misses, 1000, left()), signal);
      if (signal.aborted) break;
    } else announced.delete(storagePath);
    let hold = Math.min(HOLD_SECONDS, Math.floor(left() / 1000));
    // Under a second left: sleep it out. A hold of 0 is answered at once, so asking again and
    // again would spin (thousands of requests, and their garbage, in that last second).
    if (hold < 1) {
      await sleep(left(), signal);
      break;
    }
    // Listening for the gateway's return: a hold of 0 is answered at once (a held wait's 204
    // would come a hold later), and that answer ends the wait, so no spin: one ask per retry sleep.
    const probing = o.untilBack === true && away;
    if (probing) hold = 0;
    try {
      const res = await client.fetch(`/repo/wait?after=${after}&timeout=${hold}`, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(hold * 1000 + 15_000)]),
      });
      const body = await res.text().catch(() => "");
      if (res.status === 200) {
        const version = announcedVersion(body);
        const was = announced.get(storagePath);
        if (!was || version > was.version) announced.set(storagePath, { version, misses: was?.misses ?? 0 });
        return "news";
      }
      if (res.status === 204) {
        if (probing) return "back";
        continue;
      }
      // A 502-504 without Retry-After is what a load balancer answers while no replica is up (a
      // restart of them all): as passing as a dropped connection, and retried the same way.
      // Sleeping out the poll interval instead left the fleet without push until then, and
      // brought every device back at the same instant. The gateway's own 500 is not retried
      // soon: a sick gateway would have the whole fleet asking every few seconds.
      if (proxyWithoutBackend(res.status) && !res.headers.has("retry-after")) {
        away = true;
        await sleep(Math.min(left(), retryMs()), signal);
        continue;
      }
      // No push on this gateway (404), or it refuses (its cap on held waits: 503 with Retry-After): plain polling.
      await sleep(left(), signal);
    } catch (e) {
      if (signal.aborted) break;
      // A certificate refused by this device's clock does not mend in seconds: wait out the poll.
      if (isCertificateTimeError(e)) {
        await sleep(left(), signal);
        continue;
      }
      away = true;
      await sleep(Math.min(left(), retryMs()), signal);
    }
  }
  return signal.aborted ? "aborted" : "timeout";
}
