import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { acquireLock } from "../fs/pid-lock.ts";
import { DigestMismatchError, sha256 } from "../oci/digest.ts";
import { DeviceBlobStore } from "./store.ts";

const root = mkdtempSync(join(tmpdir(), "device-store-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("DeviceBlobStore rebuilt layers", () => {
  const tar = new TextEncoder().encode("a layer tar ".repeat(1000));
  const layer = sha256(gzipSync(tar)); // the registry digest of the compressed layer
  const diffId = sha256(tar);

  test("a rebuilt layer stands for its registry digest, and prune keeps it only with that digest", async () => {
    const store = new DeviceBlobStore(join(root, "a"));
    expect(store.has(layer)).toBe(false);
    const tmp = store.rebuildPath(layer);
    mkdirSync(dirname(tmp), { recursive: true });
    writeFileSync(tmp, tar);
    await store.putRebuiltLayer(layer, tmp, diffId);
    expect(store.has(layer)).toBe(true);
    expect(store.holder(layer)).toBe(diffId);
    expect(await store.read(layer)).toEqual(tar);
    store.prune(new Set([layer]));
    expect(store.has(layer)).toBe(true);
    store.prune(new Set());
    expect(store.has(layer)).toBe(false);
    expect(store.has(diffId)).toBe(false);
  });

  test("refuses a rebuilt file that does not hash to the diff_id", async () => {
    const store = new DeviceBlobStore(join(root, "b"));
    const tmp = store.rebuildPath(layer);
    mkdirSync(dirname(tmp), { recursive: true });
    writeFileSync(tmp, new TextEncoder().encode("other bytes"));
    await expect(store.putRebuiltLayer(layer, tmp, diffId)).rejects.toThrow(DigestMismatchError);
    expect(store.has(layer)).toBe(false);
  });
});

describe("DeviceBlobStore leases", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  const blob = (store: DeviceBlobStore, s: string) => {
    const d = sha256(bytes(s));
    store.putBytes(d, bytes(s));
    return d;
  };
  const partial = (store: DeviceBlobStore, s: string) => {
    const d = sha256(bytes(s));
    mkdirSync(dirname(store.ingestPath(d)), { recursive: true });
    writeFileSync(store.ingestPath(d), bytes(s.slice(0, 3)));
    return d;
  };
  const leaseFiles = (store: DeviceBlobStore) => (existsSync(join(store.root, "leases")) ? readdirSync(join(store.root, "leases")) : []);

  test("prune keeps what a lease holds (blobs, a rebuilt layer's tar, partials) until it is released", async () => {
    const store = new DeviceBlobStore(join(root, "lease"));
    const [kept, leasedBlob, other] = [blob(store, "in the target"), blob(store, "the agent's config"), blob(store, "nobody's")];
    const [leasedPartial, otherPartial] = [partial(store, "the agent's layer"), partial(store, "a dropped download")];
    const tar = bytes("a rebuilt tar ".repeat(100));
    const layer = sha256(gzipSync(tar));
    const tmp = store.rebuildPath(layer);
    writeFileSync(tmp, tar);
    await store.putRebuiltLayer(layer, tmp, sha256(tar));

    const lease = store.lease("agent");
    await lease.add([leasedBlob, leasedPartial]);
    await lease.add([layer]);
    expect(store.prune(new Set([kept]))).toMatchObject({ removed: 1 });
    for (const d of [kept, leasedBlob, layer]) expect(store.has(d)).toBe(true);
    expect(store.has(other)).toBe(false);
    expect(store.partialSize(leasedPartial)).toBe(3);
    expect(store.partialSize(otherPartial)).toBe(0);

    lease.release();
    expect(leaseFiles(store)).toEqual([]);
    store.prune(new Set([kept]));
    for (const d of [leasedBlob, layer, sha256(tar)]) expect(store.has(d)).toBe(false);
    expect(store.partialSize(leasedPartial)).toBe(0);
    expect(store.has(kept)).toBe(true);
  });

  test("another process's lease holds while it runs; once it died the next prune removes the lease and its blobs", async () => {
    const store = new DeviceBlobStore(join(root, "dead"));
    const d = blob(store, "pulled by a process that crashes");
    const child = Bun.spawn(
      [process.execPath, "-e", `import { DeviceBlobStore } from ${JSON.stringify(join(import.meta.dir, "store.ts"))};
        await new DeviceBlobStore(${JSON.stringify(store.root)}).lease("agent").add([${JSON.stringify(d)}]);
        console.log("leased");
        await Bun.sleep(60_000);`],
      { stdout: "pipe", stderr: "inherit" },
    );
    try {
      const reader = child.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("leased");
      store.prune(new Set());
      expect(store.has(d)).toBe(true);
      expect(leaseFiles(store).length).toBe(2);
    } finally {
      child.kill("SIGKILL"); // no release: a crash
      await child.exited;
    }
    expect(leaseFiles(store).length).toBe(2);
    store.prune(new Set());
    expect(store.has(d)).toBe(false);
    expect(leaseFiles(store)).toEqual([]);
  });

  test("a lease taken while another process prunes is in force only once that prune ended", async () => {
    const store = new DeviceBlobStore(join(root, "racing"));
    const d = blob(store, "the agent finds this present");
    const pruner = Bun.spawn(["sleep", "30"]);
    const lock = acquireLock(join(store.root, "prune.lock"), pruner.pid); // that process is midway through a prune
    try {
      let added = false;
      const adding = store.lease("agent").add([d]).then(() => (added = true));
      await Bun.sleep(150);
      expect(added).toBe(false);
      lock.release();
      await adding;
      expect(added).toBe(true);
    } finally {
      lock.release();
      pruner.kill();
      await pruner.exited;
    }
    store.prune(new Set());
    expect(store.has(d)).toBe(true);
  });

  test("a lease naming a dead PID, or a live PID that another process had then, holds nothing and is removed", async () => {
    const store = new DeviceBlobStore(join(root, "deadpid"));
    const [d, e] = [blob(store, "leased by a PID that is gone"), blob(store, "leased by a PID since reused")];
    const gone = Bun.spawn(["sleep", "0"]);
    await gone.exited;
    const dir = join(store.root, "leases");
    mkdirSync(dir, { recursive: true });
    acquireLock(join(dir, `agent-${gone.pid}-0.lock`), gone.pid);
    writeFileSync(join(dir, `agent-${gone.pid}-0.json`), JSON.stringify({ owner: "agent", digests: [d] }));
    writeFileSync(join(dir, `.agent-${gone.pid}-1.json.${gone.pid}-0badf00d.tmp`), "{"); // it died writing another
    // This PID, started at another time: the process that leased had it before this one.
    writeFileSync(join(dir, `agent-${process.pid}-0.lock`), `${process.pid} 1 ${readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()}\n`);
    writeFileSync(join(dir, `agent-${process.pid}-0.json`), JSON.stringify({ owner: "agent", digests: [e] }));
    store.prune(new Set());
    expect(store.has(d)).toBe(false);
    expect(store.has(e)).toBe(false);
    expect(leaseFiles(store)).toEqual([]);
  });

  test("a prune while another process prunes does nothing; a dead writer's temp file goes even beside a kept blob", async () => {
    const store = new DeviceBlobStore(join(root, "skip"));
    const [kept, other] = [blob(store, "kept"), blob(store, "other")];
    const pruner = Bun.spawn(["sleep", "30"]);
    const lock = acquireLock(join(store.root, "prune.lock"), pruner.pid);
    try {
      expect(store.prune(new Set([kept]))).toEqual({ removed: 0, bytes: 0, skipped: true });
      expect(store.has(other)).toBe(true);
    } finally {
      lock.release();
      pruner.kill();
      await pruner.exited;
    }
    const dead = Bun.spawn(["sleep", "0"]);
    await dead.exited;
    const blobs = dirname(store.path(kept));
    const tmp = join(blobs, `.${kept.slice(7)}.${dead.pid}-abcd1234.tmp`);
    const live = join(blobs, `.${kept.slice(7)}.${process.pid}-abcd1234.tmp`);
    writeFileSync(tmp, "half");
    writeFileSync(live, "half");
    store.prune(new Set([kept]));
    expect([store.has(kept), store.has(other), existsSync(tmp), existsSync(live)]).toEqual([true, false, false, true]);
  });
});
