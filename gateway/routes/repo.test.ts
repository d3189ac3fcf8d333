/**
 * The order that keeps replicas from signing a new timestamp over an old view: a replica that
 * has not heard of a rollout transition (its view cache does not poll here) reloads it before it
 * serves views of a timestamp version newer than the one it last loaded for. And one view per
 * check: a device whose view changes between its timestamp and snapshot fetch is answered the
 * rest of that check in the view its timestamp pinned, verified by its own TUF client (tuf-js).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { verifyAndLoadTargets } from "../../lib/tuf/verify-targets.ts";
import { testGateway } from "../../test/gateway/_fixture.ts";
import type { Gateway } from "../env.ts";
import { MemoryTufStorage } from "../ota/memory-storage.ts";
import type { TufRecord, TufStorage } from "../ota/storage.ts";
import { TufRepo } from "../ota/repo.ts";
import { Rollouts } from "../rollouts/service.ts";
import { deviceView, METADATA_HEADERS, metadataHeaders } from "./repo.ts";

const entry = (version: number): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: ["amd64-linux"], tags: ["fresh"], docker_compose_apps: {} },
});

let t: Awaited<ReturnType<typeof testGateway>>;
let dir: string;
let a: Rollouts;
let b: Rollouts;
let gwB: Gateway;
let storage: MemoryTufStorage;
beforeAll(async () => {
  t = await testGateway();
  dir = await mkdtemp(join(tmpdir(), "views-order-"));
  // Two replicas: one database (the fixture's store, one TUF storage), the same key files.
  storage = new MemoryTufStorage();
  const tufA = await TufRepo.open({ storage, keysDir: join(dir, "keys-a") });
  await cp(join(dir, "keys-a"), join(dir, "keys-b"), { recursive: true });
  const tufB = await TufRepo.open({ storage, keysDir: join(dir, "keys-b") });
  // Neither replica polls for changed rollouts here: B learns of A's transition only through the route's reload.
  a = await new Rollouts({ store: t.gw.store, tuf: tufA, tickMs: 0, viewPollMs: 0 }).start();
  b = await new Rollouts({ store: t.gw.store, tuf: tufB, tickMs: 0, viewPollMs: 0 }).start();
  t.gw.tuf = tufA;
  t.gw.rollouts = a;
  gwB = { ...t.gw, tuf: tufB, rollouts: b };
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

const targetsSeen = async (gw: Gateway, uuid: string) => {
  const bytes = await gw.tuf.metadata("targets.json", deviceView(gw, uuid));
  return Object.keys(JSON.parse(new TextDecoder().decode(bytes)).signed.targets).sort();
};
const timestampVersion = async (gw: Gateway, uuid: string) =>
  JSON.parse(new TextDecoder().decode(await gw.tuf.metadata("timestamp.json", deviceView(gw, uuid)))).signed.version as number;

test("a replica that missed a transition reloads before serving the newer timestamp's views", async () => {
  const inside = await t.register({ tags: ["fresh"] });
  const outside = await t.register({ tags: ["fresh"] });
  await t.gw.tuf.addTargets({ "amd64-linux-1": entry(1) });
  const r = await a.create({ target: "2", tag: "fresh", waves: [50, 100], soak: "1h", first: [inside.uuid] });
  await t.gw.tuf.addTargets({ "amd64-linux-2": entry(2) });
  expect(await targetsSeen(gwB, outside.uuid)).toEqual(["amd64-linux-1"]);
  expect(await targetsSeen(gwB, inside.uuid)).toEqual(["amd64-linux-1", "amd64-linux-2"]);
  const before = await timestampVersion(gwB, outside.uuid);

  await a.advance(r.id); // on replica A: the wave in the database, A's views, then the version bump
  expect(await timestampVersion(gwB, outside.uuid)).toBe(before + 1);
  expect(await targetsSeen(gwB, outside.uuid)).toEqual(["amd64-linux-1", "amd64-linux-2"]);
  // Both replicas sign the same bytes for that version.
  for (const f of ["timestamp.json", "snapshot.json", "targets.json"])
    expect(new TextDecoder().decode(await gwB.tuf.metadata(f, deviceView(gwB, outside.uuid)))).toBe(
      new TextDecoder().decode(await t.gw.tuf.metadata(f, deviceView(t.gw, outside.uuid))),
    );
});

/**
 * A device's TUF client (lib/tuf, tuf-js, as fioup checks) whose requests reach replica `gw` as
 * the device `uuid`; `afterTimestamp` runs once the timestamp is served, before the client reads it.
 */
async function tufClient(gw: Gateway, uuid: string) {
  const metadataDir = join(dir, `client-${uuid}`);
  await mkdir(metadataDir, { recursive: true });
  await writeFile(join(metadataDir, "root.json"), await gw.tuf.trustedRoot());
  const client = {
    afterTimestamp: undefined as (() => Promise<unknown>) | undefined,
    refresh: () => verifyAndLoadTargets({ metadataDir, metadataBaseUrl: "https://gw.invalid/repo/", fetch }),
  };
  const fetch = async (url: string) => {
    const file = url.slice(url.lastIndexOf("/") + 1);
    const bytes = await gw.tuf.metadata(file, deviceView(gw, uuid));
    if (file === "timestamp.json") await client.afterTimestamp?.();
    return bytes ? new Response(bytes as Uint8Array<ArrayBuffer>) : new Response("not found", { status: 404 });
  };
  return client;
}

test("a wave released, then the rollout cancelled, during a device's check: each check verifies, in the view its timestamp pinned", async () => {
  const canary = await t.register({ tags: ["race"] });
  const waiting = await t.register({ tags: ["race"] });
  const r = await a.create({ target: "3", tag: "race", waves: [50, 100], soak: "1h", first: [canary.uuid] });
  const device = await tufClient(t.gw, waiting.uuid);
  let version = 0;
  /** One check: the targets it verified, which must be a newer version than the last check's (else it fetched no snapshot). */
  const check = async () => {
    const seen = await device.refresh();
    expect(seen.version).toBeGreaterThan(version);
    version = seen.version;
    return Object.keys(seen.targets);
  };
  expect(await check()).not.toContain("amd64-linux-3");

  // Version 3 is published, and the next wave released (the view changes, the chain is re-signed)
  // between the device's timestamp and snapshot fetch: that check is answered in the view it began with.
  await t.gw.tuf.addTargets({ "amd64-linux-3": entry(3) });
  device.afterTimestamp = () => a.advance(r.id);
  expect(await check()).not.toContain("amd64-linux-3");
  device.afterTimestamp = undefined;
  expect(await check()).toContain("amd64-linux-3"); // its next check has the version

  // Another target published, and the rollout cancelled with the device released but pending:
  // the check under way still ends as it began (what its timestamp pinned a moment ago); the
  // next one no longer offers the version.
  await t.gw.tuf.addTargets({ "amd64-linux-4": entry(4) });
  device.afterTimestamp = () => a.cancel(r.id);
  expect(await check()).toContain("amd64-linux-3");
  device.afterTimestamp = undefined;
  expect(await check()).not.toContain("amd64-linux-3");
});

test("a replica whose newest snapshot is read a moment behind its newest timestamp (each cached apart) still answers a check in the view its timestamp pinned", async () => {
  // Replica C reads the shared chain as through tuf-cache.ts right after a transition replica A
  // signed: the newest timestamp already read afresh, the newest snapshot still the one before.
  let frozen: TufRecord | undefined;
  const lagging: TufStorage = {
    getLatest: async (role) => (role === "snapshot" && frozen ? frozen : storage.getLatest(role)),
    get: (role, version) => storage.get(role, version),
    put: (records) => storage.put(records),
  };
  await cp(join(dir, "keys-a"), join(dir, "keys-c"), { recursive: true });
  const tufC = await TufRepo.open({ storage: lagging, keysDir: join(dir, "keys-c") });
  const c = await new Rollouts({ store: t.gw.store, tuf: tufC, tickMs: 0, viewPollMs: 0 }).start();
  try {
    const gwC: Gateway = { ...t.gw, tuf: tufC, rollouts: c };
    const canary = await t.register({ tags: ["lag"] });
    const waiting = await t.register({ tags: ["lag"] });
    const r = await a.create({ target: "5", tag: "lag", waves: [50, 100], soak: "1h", first: [canary.uuid] });
    const device = await tufClient(gwC, waiting.uuid);
    expect(Object.keys((await device.refresh()).targets)).not.toContain("amd64-linux-5");
    await t.gw.tuf.addTargets({ "amd64-linux-5": entry(5) });
    device.afterTimestamp = async () => {
      frozen = await storage.getLatest("snapshot");
      await a.advance(r.id);
    };
    expect(Object.keys((await device.refresh()).targets)).not.toContain("amd64-linux-5");
    device.afterTimestamp = undefined;
    frozen = undefined;
    expect(Object.keys((await device.refresh()).targets)).toContain("amd64-linux-5");
  } finally {
    await c.stop();
  }
});

test("a timestamp answer tells a device the tags the gateway decided for it: tags only, not to a device that chooses its own, nor on other files", () => {
  const decided = { tags: ["main", "beta"], tagsFromDevice: false };
  expect(metadataHeaders(decided, "timestamp.json")).toEqual({ ...METADATA_HEADERS, "x-device-tags": "main,beta" });
  // One object per row's tags (the fast path keys its serialised head by it), and per tag list.
  expect(metadataHeaders(decided, "timestamp.json")).toBe(metadataHeaders(decided, "timestamp.json"));
  expect(metadataHeaders({ tags: ["main", "beta"], tagsFromDevice: false }, "timestamp.json")).toBe(metadataHeaders(decided, "timestamp.json"));
  expect(metadataHeaders({ tags: ["main"], tagsFromDevice: true }, "timestamp.json")).toBe(METADATA_HEADERS);
  expect(metadataHeaders({ tags: [], tagsFromDevice: false }, "timestamp.json")).toBe(METADATA_HEADERS);
  expect(metadataHeaders(decided, "snapshot.json")).toBe(METADATA_HEADERS);
  expect(metadataHeaders(undefined, "timestamp.json")).toBe(METADATA_HEADERS);
  // A row stored before the tag rule: only what could be a tag goes out (a header cannot carry "m€in").
  expect(metadataHeaders({ tags: ["m€in", "eu/west", "main"], tagsFromDevice: false }, "timestamp.json")).toEqual({ ...METADATA_HEADERS, "x-device-tags": "main" });
  expect(metadataHeaders({ tags: ["m€in"], tagsFromDevice: false }, "timestamp.json")).toBe(METADATA_HEADERS);
});
