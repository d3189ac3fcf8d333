import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { loadKeyFile } from "../../lib/tuf/keys.ts";
import { metaFileFor, parseMetadata } from "../../lib/tuf/metadata.ts";
import { BadSignatureError, MetadataMismatchError, MetadataTooLargeError } from "../../lib/tuf/verification-errors.ts";
import { verifyAndLoadTargets } from "../../lib/tuf/verify-targets.ts";
import { SigningKeyUnavailableError } from "./key-store.ts";
import { MemoryTufStorage } from "./memory-storage.ts";
import { TufRepo } from "./repo.ts";
import { PinnedViews, SignedViews, type View, type ViewSource } from "./views.ts";

const entry = (version: number): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: ["rpi"], tags: ["main"], docker_compose_apps: {} },
});
const hide = (key: string, ...versions: string[]): View => ({ key, hideVersions: versions, annotate: {} });
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

let dir: string;
let storage: MemoryTufStorage;
let repo: TufRepo;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tuf-views-"));
  storage = new MemoryTufStorage();
  repo = await TufRepo.open({ storage, keysDir: join(dir, "keys") });
  await repo.addTargets({ "rpi-1": entry(1), "rpi-2": entry(2) });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A device's TUF client (lib/tuf, tuf-js) whose requests reach `serve` instead of a network. */
async function device(name: string) {
  const metadataDir = join(dir, name);
  await mkdir(metadataDir, { recursive: true });
  await writeFile(join(metadataDir, "root.json"), await repo.trustedRoot());
  let serve = (file: string) => repo.metadata(file);
  const fetch = async (url: string) => {
    const bytes = await serve(url.slice(url.lastIndexOf("/") + 1));
    return bytes ? new Response(bytes as Uint8Array<ArrayBuffer>) : new Response("not found", { status: 404 });
  };
  return {
    set serve(fn: (file: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>) {
      serve = fn;
    },
    refresh: () => verifyAndLoadTargets({ metadataDir, metadataBaseUrl: "https://gw.invalid/repo/", fetch }),
  };
}

describe("signed views", () => {
  test("a view without a version verifies with tuf-js and lacks it; the main chain still has it", async () => {
    const outside = await device("outside");
    outside.serve = (f) => repo.metadata(f, () => hide("r1.1:h", "2"));
    const seen = await outside.refresh();
    expect(Object.keys(seen.targets)).toEqual(["rpi-1"]);
    expect(seen.version).toBe((await repo.targets()).version); // same version as the main targets.json
    const main = await device("main");
    expect(Object.keys((await main.refresh()).targets).sort()).toEqual(["rpi-1", "rpi-2"]);
  });

  test("an annotated entry carries custom.rollout; every entry is the published one otherwise", async () => {
    const inside = await device("inside");
    const view: View = { key: "r1.1:a", hideVersions: [], annotate: { "2": { rollout: "r1", window: "Sat 02:00-04:00 UTC", maxHold: 3600 } } };
    inside.serve = (f) => repo.metadata(f, () => view);
    const seen = await inside.refresh();
    expect(seen.targets["rpi-2"]!.custom).toEqual({ ...entry(2).custom, rollout: { rollout: "r1", window: "Sat 02:00-04:00 UTC", maxHold: 3600 } } as TargetEntry["custom"]);
    const published = (await repo.targets()).targets;
    for (const [name, e] of Object.entries(seen.targets)) {
      const { rollout: _, ...custom } = e.custom as TargetEntry["custom"] & { rollout?: unknown };
      expect({ ...e, custom }).toEqual(published[name]!);
    }
  });

  test("a view that changes nothing is the main chain, byte for byte", async () => {
    const v = () => hide("r9.1:h", "77");
    for (const f of ["timestamp.json", "snapshot.json", "targets.json"]) expect(text(await repo.metadata(f, v))).toBe(text(await repo.metadata(f)));
  });

  test("two gateways with the same keys and database make the same bytes", async () => {
    const keysCopy = join(dir, "keys-copy");
    await cp(join(dir, "keys"), keysCopy, { recursive: true });
    const other = await TufRepo.open({ storage, keysDir: keysCopy });
    const v = () => ({ key: "r1.1:a", hideVersions: ["1"], annotate: { "2": { rollout: "r1" } } });
    for (const f of ["timestamp.json", "snapshot.json", "targets.json"]) {
      const a = text(await repo.metadata(f, v));
      expect(a).not.toBe(text(await repo.metadata(f)));
      expect(text(await other.metadata(f, v))).toBe(a);
    }
  });

  test("a changed view reaches a device only with a new version: bumpViews", async () => {
    const d = await device("d");
    let view = hide("r1.1:h", "2");
    d.serve = (f) => repo.metadata(f, () => view);
    expect(Object.keys((await d.refresh()).targets)).toEqual(["rpi-1"]);
    view = { key: "r1.2:a", hideVersions: [], annotate: {} }; // its wave was released
    expect(Object.keys((await d.refresh()).targets)).toEqual(["rpi-1"]); // same versions: the client keeps what it trusts
    const before = await repo.versions();
    const { version } = await repo.bumpViews();
    const after = await repo.versions();
    expect(after).toEqual({ root: before.root, targets: before.targets + 1, snapshot: before.snapshot + 1, timestamp: before.timestamp + 1 });
    expect(version).toBe(after.timestamp);
    expect((await repo.targets()).targets).toEqual({ "rpi-1": entry(1), "rpi-2": entry(2) }); // same content
    expect(Object.keys((await d.refresh()).targets).sort()).toEqual(["rpi-1", "rpi-2"]);
  });

  // What a device meets when no replica remembers the view of its timestamp (it changed replica
  // between the two fetches): gateway/routes/repo.test.ts has the same race on one replica, which passes.
  test("a view changed between the timestamp and the snapshot fetch, the view not pinned: that refresh fails, not the next", async () => {
    const d = await device("d");
    let view = hide("r1.1:h", "2");
    d.serve = async (f) => {
      const bytes = await repo.metadata(f, () => view);
      if (f === "timestamp.json") {
        view = { key: "r1.2:a", hideVersions: [], annotate: {} };
        await repo.bumpViews(); // the rollout moves while the device is between two requests
      }
      return bytes;
    };
    await expect(d.refresh()).rejects.toBeInstanceOf(MetadataMismatchError);
    d.serve = (f) => repo.metadata(f, () => view);
    expect(Object.keys((await d.refresh()).targets).sort()).toEqual(["rpi-1", "rpi-2"]);
  });

  test("a view altered after signing is refused", async () => {
    const view = () => hide("r1.1:h", "2");
    const tampered = (bytes: Uint8Array | undefined) => {
      const doc = JSON.parse(text(bytes));
      doc.signed.targets["rpi-2"] = entry(2); // the hidden target put back, without the targets key
      return new TextEncoder().encode(JSON.stringify(doc));
    };
    const d = await device("d");
    d.serve = async (f) => {
      const bytes = await repo.metadata(f, view);
      return f.endsWith("targets.json") ? tampered(bytes) : bytes;
    };
    await expect(d.refresh()).rejects.toBeInstanceOf(MetadataTooLargeError); // the signed snapshot pins other bytes (here: fewer)

    // A whole chain re-pinned to the altered targets: the first signature checked fails.
    const repin = (bytes: Uint8Array | undefined, child: string, childBytes: Uint8Array, version: number) => {
      const doc = JSON.parse(text(bytes));
      doc.signed.meta[child] = metaFileFor(childBytes, version).toJSON();
      return new TextEncoder().encode(JSON.stringify(doc));
    };
    const targets = tampered(await repo.metadata("targets.json", view));
    const tv = (await repo.targets()).version;
    const snapshot = repin(await repo.metadata("snapshot.json", view), "targets.json", targets, tv);
    const sv = (await repo.versions()).snapshot;
    const e = await device("e");
    e.serve = async (f) =>
      f.endsWith("targets.json") ? targets : f.endsWith("snapshot.json") ? snapshot : f === "timestamp.json" ? repin(await repo.metadata(f, view), "snapshot.json", snapshot, sv) : repo.metadata(f);
    await expect(e.refresh()).rejects.toBeInstanceOf(BadSignatureError);
  });

  test("with the targets key offline a view is refused, never replaced by the main chain", async () => {
    await rm(join(dir, "keys", "targets.json"));
    await expect(repo.metadata("timestamp.json", () => hide("r1.1:h", "2"))).rejects.toBeInstanceOf(SigningKeyUnavailableError);
    expect(await repo.metadata("timestamp.json", () => hide("r9.1:h", "77"))).toEqual((await repo.metadata("timestamp.json"))!); // nothing to hide: main
  });

  test("the cache is bounded in bytes and entries and makes each file once", async () => {
    let made = 0;
    const source: ViewSource = {
      record: (role, version) => storage.get(role, version),
      keys: async (role) => {
        made++;
        return [await loadKeyFile(join(dir, "keys", `${role}.json`))];
      },
    };
    const views = new SignedViews(source, { maxBytes: 4096, maxEntries: 3 });
    const targets = (await storage.getLatest("targets"))!;
    const a = await Promise.all([views.bytes(targets, hide("a", "2")), views.bytes(targets, hide("a", "2"))]);
    expect(text(a[0])).toBe(text(a[1]));
    expect(made).toBe(1);
    for (let i = 0; i < 10; i++) await views.bytes(targets, hide(`k${i}`, "2"));
    expect(views.stats.entries).toBeLessThanOrEqual(3);
    expect(views.stats.bytes).toBeLessThanOrEqual(4096);
    expect(parseMetadata("targets", text(a[0])).signed.version).toBe(targets.version);
  });

  test("a device's pinned view is kept at least one span and less than two; older generations go whole", () => {
    let now = 1_000;
    const pinned = new PinnedViews(30_000, () => now);
    const v1 = hide("r1:h", "2");
    const v2 = hide("r1:a");
    pinned.remember("d1", v1);
    now += 29_999;
    pinned.remember("d2", v2); // the last moment of the first span
    expect(pinned.recall("d1")).toBe(v1);
    now += 30_000; // d1 is 59.999 s old: still there
    expect([pinned.recall("d1"), pinned.recall("d2")]).toEqual([v1, v2]);
    now += 1; // d1's generation is two spans old: gone; d2 (30 s old) too, kept its one span
    expect([pinned.recall("d1"), pinned.recall("d2")]).toEqual([undefined, undefined]);
    pinned.remember("d1", v2);
    for (let i = 0; i < 1000; i++) pinned.remember(`other-${i}`, v1);
    expect(pinned.size).toBe(1001);
    now += 60_000; // quiet for two spans: nothing is kept
    expect(pinned.recall("d1")).toBeUndefined();
    expect(pinned.size).toBe(0);
  });
});
