/**
 * Replicas on one PostgreSQL: exactly one is the TUF signer at a time (a lease in the database),
 * and when it dies (SIGKILL, no clean hand-over) another takes the role within 10 s. State lives
 * in the database: a target published through one replica is served, signed, by every replica;
 * a blob pushed through one replica downloads from another, and a download cut short on one
 * resumes with Range on another (the registry storage is shared).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { startGateway, startReplica, type GatewayHandle, SIGNER_LOG as SIGNER } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir, until } from "../harness/tmp.ts";
import { post } from "./_client.ts";

let pg: PostgresHandle;
const replicas: GatewayHandle[] = [];
beforeAll(async () => {
  pg = await startPostgres();
  const db = await pg.createDatabase("replicas");
  // One registry storage for all (in production a shared filesystem, or an external registry).
  const args = ["--registry-dir", join(await tempDir("shared-registry-"), "registry")];
  const first = await startGateway({ db, args });
  replicas.push(first);
  // Every replica runs with the same data dir content (CA, keys), as copied by the operator.
  for (let i = 0; i < 2; i++) replicas.push(await startReplica(first, { db, args }));
}, 120_000);

afterAll(async () => {
  for (const r of replicas) await r.stop();
  await pg?.stop();
}, 120_000);

let killed: GatewayHandle | undefined;
const signers = () => replicas.filter((r) => readFileSync(r.logFile, "utf8").includes(SIGNER));

async function timestampVersion(r: GatewayHandle): Promise<number> {
  // Read as the admin (the TUF repo is public to the admin token too): the signed timestamp's version.
  const res = await r.adminFetch("/repo/timestamp.json");
  expect(res.status).toBe(200);
  const doc = (await res.json()) as { signed: { version: number; expires: string } };
  expect(new Date(doc.signed.expires).getTime()).toBeGreaterThan(Date.now());
  return doc.signed.version;
}

test("one signer at a time; a killed signer is replaced within 10 s; every replica serves the same signed state", async () => {
  expect(signers().length).toBe(1);
  const leader = signers()[0]!;
  const others = replicas.filter((r) => r !== leader);

  await leader.kill();
  killed = leader;
  const killedAt = Date.now();
  const next = await until("a survivor to log that it is the signer", () => others.filter((r) => readFileSync(r.logFile, "utf8").includes(SIGNER)), (n) => n.length > 0, 10_000, 100);
  expect(next.length).toBe(1);
  console.log(`signer role moved in ${Date.now() - killedAt} ms`);

  // A publish through one survivor: the other serves the new signed timestamp too.
  const before = await timestampVersion(others[1]!);
  const uri = `${others[0]!.host}/main/web@sha256:${"c".repeat(64)}`;
  const res = await others[0]!.adminFetch(
    "/admin/targets",
    post({ targets: { "amd64-linux-7": { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: "7", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri } } } } } }),
  );
  expect(res.status).toBeLessThan(300);
  const after = await until("the other survivor to serve a new timestamp", () => timestampVersion(others[1]!), (v) => v !== before, 4000, 100);
  expect(after).toBeGreaterThan(before);
});

test("a blob pushed through one replica is served by the others, and a download resumes across replicas", async () => {
  // The replicas still running (the first test killed its signer).
  const [up, down] = replicas.filter((r) => r !== killed);
  const blob = crypto.getRandomValues(new Uint8Array(256 * 1024));
  const digest = `sha256:${new Bun.CryptoHasher("sha256").update(blob).digest("hex")}`;
  const res = await up!.adminFetch(`/v2/main/shared/blobs/uploads/?digest=${digest}`, { method: "POST", body: blob, headers: { "content-type": "application/octet-stream" } });
  expect(res.status).toBe(201);
  const half = blob.length / 2;
  const first = await down!.adminFetch(`/v2/main/shared/blobs/${digest}`, { headers: { range: `bytes=0-${half - 1}` } });
  expect(first.status).toBe(206);
  const rest = await up!.adminFetch(`/v2/main/shared/blobs/${digest}`, { headers: { range: `bytes=${half}-` } });
  expect(rest.status).toBe(206);
  const joined = Buffer.concat([Buffer.from(await first.arrayBuffer()), Buffer.from(await rest.arrayBuffer())]);
  expect(Buffer.compare(joined, Buffer.from(blob))).toBe(0);
});

test("an online key rotated through one replica reaches the others within seconds: a publish through another lands", async () => {
  const live = replicas.filter((r) => r !== killed);
  const signer = live.find((r) => readFileSync(r.logFile, "utf8").includes(SIGNER))!;
  const other = live.find((r) => r !== signer)!;
  const took = (r: GatewayHandle, role: string) => readFileSync(r.logFile, "utf8").includes(`gateway: took the new ${role} key`);

  // targets rotated on the signer; a publish through the other replica signs with the new key.
  const rotated = await signer.adminFetch("/admin/keys/rotate", post({ role: "targets" }));
  expect(rotated.status).toBe(200);
  await until("the other replica to take the new targets key", () => took(other, "targets"), Boolean, 10_000, 100);
  const uri = `${other.host}/main/web@sha256:${"d".repeat(64)}`;
  const res = await other.adminFetch(
    "/admin/targets",
    post({ targets: { "amd64-linux-8": { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: "8", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri } } } } } }),
  );
  expect(res.status).toBeLessThan(300);

  // timestamp rotated on the other replica; the signer, which re-signs it, takes the new key.
  expect((await other.adminFetch("/admin/keys/rotate", post({ role: "timestamp" }))).status).toBe(200);
  await until("the signer to take the new timestamp key", () => took(signer, "timestamp"), Boolean, 10_000, 100);
  const keyIds = JSON.parse(readFileSync(join(signer.dataDir, "tuf", "keys", "timestamp.json"), "utf8")) as { keyid: string };
  const root = (await (await signer.adminFetch("/repo/root.json")).json()) as { signed: { roles: { timestamp: { keyids: string[] } } } };
  expect(root.signed.roles.timestamp.keyids).toEqual([keyIds.keyid]);
});
