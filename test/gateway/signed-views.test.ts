/**
 * Signed views over real TLS (docs/signed-views.md): two gateways on one PostgreSQL, devices with
 * their own certificates, and the device's own TUF client (lib/tuf, tuf-js) and fioup's target
 * selection. A device outside the released wave of a rollout is served signed metadata without
 * the new version and cannot select it; a device inside sees it, annotated; both replicas serve
 * the same bytes; altered views are refused; a released wave reaches the waiting device through
 * the version bump.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { EMPTY_SHA256, TargetNotFoundError, type TargetEntry } from "../../lib/api/target.ts";
import { metaFileFor } from "../../lib/tuf/metadata.ts";
import { BadSignatureError, TufVerificationError } from "../../lib/tuf/verification-errors.ts";
import { verifyAndLoadTargets } from "../../lib/tuf/verify-targets.ts";
import type { FetchLike } from "../../lib/tuf/fetcher.ts";
import type { Config } from "../../fioup/config.ts";
import { DeviceClient } from "../../fioup/device-client.ts";
import { checkTargets } from "../../fioup/update/tuf-check.ts";
import { startGateway, startReplica, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir, until } from "../harness/tmp.ts";
import { post } from "./_client.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

const TAG = "views";
const HWID = "amd64-linux";
const entry = (version: number): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: [HWID], tags: [TAG], docker_compose_apps: { web: { uri: `127.0.0.1:1/main/web@sha256:${String(version).repeat(64).slice(0, 64)}` } } },
});
const text = (b: Uint8Array) => new TextDecoder().decode(b);

let pg: PostgresHandle;
let a: GatewayHandle;
let b: GatewayHandle;
let inside: TlsDevice;
let outside: TlsDevice;
let rollout: RolloutDetail;

async function admin<T>(gw: GatewayHandle, path: string, init?: RequestInit): Promise<T> {
  const res = await gw.adminFetch(path, init);
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

beforeAll(async () => {
  pg = await startPostgres();
  const db = await pg.createDatabase("signed_views");
  a = await startGateway({ db });
  b = await startReplica(a, { db });
  inside = await registerDevice(a.url, a.adminToken, a.caPem, [TAG]);
  outside = await registerDevice(a.url, a.adminToken, a.caPem, [TAG]);
  await admin(a, "/admin/targets", post({ targets: { [`${HWID}-1`]: entry(1) } }));
  // The safe order: the rollout first (it hides version 2 from everyone but its first wave), then the publish.
  rollout = await admin<RolloutDetail>(a, "/admin/rollouts", post({ target: "2", tag: TAG, waves: [50, 100], soak: "1h", first: [inside.uuid] }));
  await admin(a, "/admin/targets", post({ targets: { [`${HWID}-2`]: entry(2) } }));
}, 120_000);

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await pg?.stop();
}, 60_000);

/** A device's storage dir: `tuf/` holds the gateway's first root.json, as after registration. */
async function deviceStorage(): Promise<string> {
  const storage = await tempDir("views-device-");
  mkdirSync(join(storage, "tuf"));
  const root = await a.adminFetch("/repo/1.root.json");
  writeFileSync(join(storage, "tuf", "root.json"), new Uint8Array(await root.arrayBuffer()));
  return storage;
}
const trustStore = async () => join(await deviceStorage(), "tuf");

const tls = (dev: TlsDevice) => ({ ca: a.caPem, cert: dev.cert, key: dev.key });
/** The network as the device's TUF client reaches it, with the device's certificate. */
const deviceFetch =
  (dev: TlsDevice): FetchLike =>
  (url, init) =>
    fetch(url, { ...init, tls: tls(dev) } as RequestInit);
const refresh = (dev: TlsDevice, metadataDir: string, gw: GatewayHandle = a, fetch?: FetchLike) =>
  verifyAndLoadTargets({ metadataDir, metadataBaseUrl: `${gw.url}/repo/`, fetch: fetch ?? { tls: tls(dev) } });

/** fioup's own check (lib/tuf verification, then selection), for a device whose storage is `storagePath`. */
function fioupCheck(dev: TlsDevice, storagePath: string, version?: string) {
  const cfg = { server: a.url, hardwareId: HWID, tags: [TAG], storagePath } as Config;
  const client = new DeviceClient(a.url, tls(dev), { tags: [TAG], apps: [] });
  return checkTargets(cfg, client, { badTargets: new Map(), ...(version ? { version } : {}) });
}

const served = async (dev: TlsDevice, gw: GatewayHandle, file: string) => {
  const res = await dev.fetch(`${gw.url}/repo/${file}`);
  expect(res.status).toBe(200);
  return new Uint8Array(await res.arrayBuffer());
};

let outsideStore: string;

describe("signed views", () => {
  test("a device outside the released wave verifies metadata without the new version, and fioup refuses it", async () => {
    const main = (await admin<{ targets: Record<string, TargetEntry> }>(a, "/admin/targets")).targets;
    expect(Object.keys(main).sort()).toEqual([`${HWID}-1`, `${HWID}-2`]); // published, and preload/admin see it
    const storage = await deviceStorage();
    outsideStore = join(storage, "tuf");
    const seen = await refresh(outside, outsideStore);
    expect(Object.keys(seen.targets)).toEqual([`${HWID}-1`]);
    await expect(fioupCheck(outside, storage, "2")).rejects.toBeInstanceOf(TargetNotFoundError);
    const plain = await fioupCheck(outside, storage);
    expect(plain.selected?.name).toBe(`${HWID}-1`);
    // By name, on the other replica, through the versioned file names: still not there.
    const targetsVersion = seen.version;
    const doc = JSON.parse(text(await served(outside, b, `${targetsVersion}.targets.json`)));
    expect(Object.keys(doc.signed.targets)).toEqual([`${HWID}-1`]);
  });

  test("a device of the released wave sees it, with custom.rollout; every entry is the published one", async () => {
    const seen = await refresh(inside, await trustStore());
    expect(Object.keys(seen.targets).sort()).toEqual([`${HWID}-1`, `${HWID}-2`]);
    const custom = seen.targets[`${HWID}-2`]!.custom as TargetEntry["custom"] & { rollout?: { rollout: string } };
    expect(custom.rollout?.rollout).toBe(rollout.id);
    const main = (await admin<{ targets: Record<string, TargetEntry> }>(a, "/admin/targets")).targets;
    for (const [name, e] of Object.entries(seen.targets)) {
      const { rollout: _, ...rest } = e.custom as TargetEntry["custom"] & { rollout?: unknown };
      expect({ ...e, custom: rest }).toEqual(main[name]!);
    }
  });

  test("two gateways on one PostgreSQL serve the same view bytes, unlike the main chain", async () => {
    for (const file of ["timestamp.json", "snapshot.json", "targets.json"]) {
      const fromA = text(await served(outside, a, file));
      expect(text(await served(outside, b, file))).toBe(fromA);
      expect(fromA).not.toBe(text(new Uint8Array(await (await a.adminFetch(`/repo/${file}`)).arrayBuffer())));
    }
  });

  test("a view altered on the way is refused by the device", async () => {
    const realFetch = deviceFetch(outside);
    const putBack = (bytes: Uint8Array) => {
      const doc = JSON.parse(text(bytes));
      doc.signed.targets[`${HWID}-2`] = entry(2); // the hidden target, without the targets key
      return new TextEncoder().encode(JSON.stringify(doc));
    };
    const altered: FetchLike = async (url, init) => {
      const res = await realFetch(url, init);
      if (!url.endsWith("targets.json")) return res;
      return new Response(putBack(new Uint8Array(await res.arrayBuffer())) as Uint8Array<ArrayBuffer>);
    };
    await expect(refresh(outside, await trustStore(), a, altered)).rejects.toBeInstanceOf(TufVerificationError);

    // The whole chain re-pinned to the altered targets: the timestamp's signature no longer holds.
    const targets = putBack(await served(outside, a, "targets.json"));
    const repin = (bytes: Uint8Array, child: string, childBytes: Uint8Array) => {
      const doc = JSON.parse(text(bytes));
      doc.signed.meta[child] = metaFileFor(childBytes, doc.signed.meta[child].version).toJSON();
      return new TextEncoder().encode(JSON.stringify(doc));
    };
    const snapshot = repin(await served(outside, a, "snapshot.json"), "targets.json", targets);
    const chain: FetchLike = async (url, init) => {
      const file = url.slice(url.lastIndexOf("/") + 1);
      if (file.endsWith("targets.json")) return new Response(targets as Uint8Array<ArrayBuffer>);
      if (file.endsWith("snapshot.json")) return new Response(snapshot as Uint8Array<ArrayBuffer>);
      if (file === "timestamp.json") return new Response(repin(await served(outside, a, file), "snapshot.json", snapshot) as Uint8Array<ArrayBuffer>);
      return realFetch(url, init);
    };
    await expect(refresh(outside, await trustStore(), a, chain)).rejects.toBeInstanceOf(BadSignatureError);
  });

  test("a wave released during a device's check: that check verifies in the view it began with; the next, on either replica, has the version", async () => {
    const before = JSON.parse(text(await served(outside, a, "timestamp.json"))).signed.version as number;
    // A device new to this timestamp, whose check meets the release between its timestamp and its
    // snapshot fetch: the snapshot and targets it gets are those its timestamp pinned.
    const store = await trustStore();
    let advanced: RolloutDetail | undefined;
    const releasedMidway: FetchLike = async (url, init) => {
      const res = await deviceFetch(outside)(url, init);
      if (!url.endsWith("/timestamp.json") || advanced) return res;
      const body = await res.arrayBuffer();
      advanced = await admin<RolloutDetail>(a, `/admin/rollouts/${rollout.id}/advance`, { method: "POST" });
      return new Response(body, { status: res.status });
    };
    const during = await refresh(outside, store, a, releasedMidway);
    expect(advanced?.wave).toBe(1);
    expect(Object.keys(during.targets)).toEqual([`${HWID}-1`]);
    expect(Object.keys((await refresh(outside, store, a)).targets).sort()).toEqual([`${HWID}-1`, `${HWID}-2`]);

    // Through the other replica, with the trust store that already holds the old view: polling, as the device does
    // (a replica reads the newest timestamp from the database at most once a second).
    const seen = await until(`${HWID}-2 in the targets verified through replica b`, () => refresh(outside, outsideStore, b), (v) => v.targets[`${HWID}-2`] !== undefined, 5000, 100);
    expect(Object.keys(seen.targets).sort()).toEqual([`${HWID}-1`, `${HWID}-2`]);
    expect((seen.targets[`${HWID}-2`]!.custom as { rollout?: { rollout: string } }).rollout?.rollout).toBe(rollout.id);
    expect(JSON.parse(text(await served(outside, b, "timestamp.json"))).signed.version).toBeGreaterThan(before);
  });
});
