/**
 * An operator's gateway on PostgreSQL while PostgreSQL goes down and comes back: `gateway serve`
 * (the real CLI) on a private cluster, which is stopped and started again on the same data and port.
 * What the operator watches: /healthz, /metrics, the log, and the devices' answers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { Proc, until } from "../harness/tmp.ts";
import { post } from "./_client.ts";
import { anEvent } from "./_fixture.ts";
import { registerDevice } from "./_register.ts";

let pg: PostgresHandle;
let g: GatewayHandle;
let again: Proc | undefined;

beforeAll(async () => {
  pg = await startPostgres();
  g = await startGateway({ db: await pg.createDatabase("walk_outage") });
}, 120_000);

afterAll(async () => {
  await g?.stop();
  await again?.stop(10_000);
  await pg?.stop();
}, 120_000);

/** How to start the postmaster again on the same data dir and port: its own command line, as the user that ran it (read before it stops). */
function postmasterCommand(): string[] {
  const status = readFileSync(`/proc/${pg.pid}/status`, "utf8");
  const [uid, gid] = [/^Uid:\s+(\d+)/m, /^Gid:\s+(\d+)/m].map((re) => status.match(re)![1]!);
  const asOwner = process.getuid?.() === 0 && uid !== "0" ? ["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--init-groups"] : [];
  return [...asOwner, ...readFileSync(`/proc/${pg.pid}/cmdline`, "utf8").split("\0").filter(Boolean)];
}

const logLines = (what: RegExp) => readFileSync(g.logFile, "utf8").split("\n").filter((l) => what.test(l));
const scrape = async () => (await fetch(`${g.url}/metrics`, { tls: { ca: g.caPem } } as RequestInit)).text();

describe("PostgreSQL down and back while the gateway runs", () => {
  test("503 with Retry-After and a reason, /metrics still answers, one log line each way, recovery by itself", async () => {
    const dev = await registerDevice(g.url, g.adminToken, g.caPem);
    expect((await dev.fetch(`${g.url}/events`, post([anEvent("before")]))).status).toBe(200);
    expect(await scrape()).toContain("\ngateway_database_up 1\n");

    const postmaster = postmasterCommand();
    await pg.stop();

    // The device's row is still in the gateway's 5 s cache: its events are refused for later, not lost to a 500.
    const refused = await dev.fetch(`${g.url}/events`, post([anEvent("during")]));
    expect({ status: refused.status, retryAfter: refused.headers.get("retry-after"), body: await refused.json() }).toEqual({
      status: 503,
      retryAfter: "5",
      body: { error: "Cannot reach the gateway's database (connection refused): try again later" },
    });
    for (let i = 0; i < 5; i++) {
      const health = await fetch(`${g.url}/healthz`, { tls: { ca: g.caPem } } as RequestInit);
      expect({ status: health.status, retryAfter: health.headers.get("retry-after"), body: await health.json() }).toEqual({
        status: 503,
        retryAfter: "5",
        body: { error: "Cannot reach the gateway's database (connection refused): try again later" },
      });
    }
    // Once the device's row has left the 5 s cache, its check-ins need the database too: 503, not 500.
    await Bun.sleep(5_500);
    for (const [what, init] of [["GET /repo/timestamp.json", undefined], ["POST /events", post([anEvent("later")])]] as const) {
      const res = await dev.fetch(`${g.url}${what.split(" ")[1]}`, init);
      expect(`${what}: ${res.status} ${res.headers.get("retry-after")} ${((await res.json()) as { error: string }).error}`).toBe(
        `${what}: 503 5 Cannot reach the gateway's database (connection refused): try again later`,
      );
    }
    // The outage is the store's line alone: no line per request, flush or lease renewal.
    expect(logLines(/unhandled error|admission failed|transport error|cannot record last-seen|cannot renew the signer lease/)).toEqual([]);
    expect(logLines(/no longer the TUF signer/)).toEqual(["gateway: no longer the TUF signer: the database did not answer its lease; it tries again"]);
    // A scrape still answers: what the gateway counts in memory, and that the database is down.
    const down = await scrape();
    expect(down).toContain("\n# TYPE gateway_database_up gauge\ngateway_database_up 0\n");
    expect(down).toContain("\ngateway_connections_open ");
    expect(down).not.toContain("\ngateway_devices ");
    expect(logLines(/cannot reach the database/)).toEqual([
      expect.stringMatching(
        /^gateway: cannot reach the database postgres:\/\/postgres@127\.0\.0\.1:\d+\/walk_outage: connection refused; device requests that need it are answered 503 with Retry-After, and the gateway reconnects by itself once it answers$/,
      ),
    ]);

    again = Proc.start({ name: "postgres-again", cmd: postmaster, logFile: join(pg.dir, "postgres-again.log"), stopSignal: "SIGINT" });
    await again.waitForLog("database system is ready to accept connections", 30_000);
    // Nobody restarts the gateway: its next statements find PostgreSQL again.
    await until("/healthz answers 200 again", async () => (await fetch(`${g.url}/healthz`, { tls: { ca: g.caPem } } as RequestInit)).status, (s) => s === 200, 30_000, 200);
    expect((await dev.fetch(`${g.url}/events`, post([anEvent("during"), anEvent("after")]))).status).toBe(200);
    const up = await scrape();
    expect(up).toContain("\ngateway_database_up 1\n");
    expect(up).toContain("\ngateway_devices 1\n");
    expect(up).toContain("\ngateway_events 3\n");
    await until("the signer role back", () => logLines(/this replica is the TUF signer/).length, (n) => n === 2, 10_000, 200);
    expect(logLines(/cannot reach the database|answers again/)).toEqual([
      expect.stringContaining("gateway: cannot reach the database"),
      expect.stringMatching(/^gateway: the database postgres:\/\/postgres@127\.0\.0\.1:\d+\/walk_outage answers again, after \d+ s unreachable \(\d+ statements failed meanwhile\)$/),
    ]);
  }, 120_000);
});
