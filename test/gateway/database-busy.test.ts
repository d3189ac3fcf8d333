/**
 * SQLite's write lock held by another connection while a device registers. A registration read
 * first and wrote after, so a commit by the event writer's thread in between (the lease, sightings,
 * events) failed it at once with SQLITE_BUSY: 500 "Internal error" and a stack trace, one
 * registration in 8,562 in the reliability suite's load run. Now it takes the write lock first and
 * waits for the other writer (up to the connection's 5 s); held longer than that (an operator's
 * `sqlite3` session, a disk that stalls), the gateway answers 503 with Retry-After and says why, as
 * for the other passing database troubles, and the same request sent again succeeds.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { makeDeviceCsr } from "./_device.ts";

let gw: GatewayHandle;
beforeAll(async () => {
  gw = await startGateway({ db: "" }); // SQLite, also when the suite runs on PostgreSQL: its lock is what this is about
}, 60_000);
afterAll(async () => {
  await gw?.stop();
});

/** Registers a new device with the admin token; the answer's status, Retry-After and error. */
async function register(name: string) {
  const k = await makeDeviceCsr();
  const res = await gw.adminFetch("/devices", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
  });
  const body = (await res.json()) as { error?: string };
  return { status: res.status, retryAfter: res.headers.get("retry-after"), error: body.error };
}

/** Holds the gateway database's write lock, as another writer does, for `ms`, while `during` runs. */
async function withLockHeld<T>(ms: number, during: () => Promise<T>): Promise<T> {
  const holder = new Database(join(gw.dataDir, "gateway.db"));
  holder.exec("BEGIN IMMEDIATE");
  const released = Bun.sleep(ms).then(() => {
    holder.exec("COMMIT");
    holder.close();
  });
  try {
    return await during();
  } finally {
    await released;
  }
}

test("a registration while another writer holds the lock for a moment waits for it and succeeds", async () => {
  const r = await withLockHeld(1000, () => register("waits"));
  expect(r).toEqual({ status: 201, retryAfter: null, error: undefined });
}, 60_000);

test("held longer than the gateway waits: 503 with Retry-After and the reason, no stack trace; sent again, registered", async () => {
  const r = await withLockHeld(8000, () => register("busy"));
  expect(r.status).toBe(503);
  expect(r.retryAfter).toMatch(/^\d+$/);
  expect(r.error).toBe("The database is busy (another writer held it for seconds): try again shortly");
  expect(readFileSync(gw.logFile, "utf8")).not.toContain("failed:");
  expect((await register("busy")).status).toBe(201);
}, 60_000);
