import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDockerRegistry, type DockerRegistryHandle } from "../../test/harness/docker-registry.ts";
import { startFaultProxy, type FaultProxy } from "../../test/harness/fault-proxy.ts";
import { run } from "../../test/harness/tmp.ts";
import { backoffMs, BlobNotFoundError, BlobSizeMismatchError, BlobStore, DownloadStalledError, IncompleteBlobError, retrySayer, type PullBlobOptions } from "./blob-store.ts";
import { DigestMismatchError, sha256 } from "./digest.ts";
import { RegistryClient, RegistryUnreachableError } from "./registry-client.ts";

/** Every store's directory, removed once the file's tests are done. */
const dirs: string[] = [];
const newStore = async () => {
  const dir = await mkdtemp(join(tmpdir(), "blobstore-"));
  dirs.push(dir);
  return new BlobStore(dir);
};
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe("BlobStore", () => {
  test("writeBytes stores content under blobs/sha256/<hex> and reads it back", async () => {
    const store = await newStore();
    const data = new TextEncoder().encode("hello");
    const digest = await store.writeBytes(data);
    expect(digest).toBe(sha256(data));
    expect(store.path(digest)).toBe(join(store.root, "blobs", "sha256", digest.slice(7)));
    expect(await store.has(digest)).toBe(true);
    expect(await store.size(digest)).toBe(5);
    expect(new TextDecoder().decode(await store.read(digest))).toBe("hello");
    expect(await store.list()).toEqual([digest]);
    expect(await store.writeBytes(data)).toBe(digest); // idempotent
  });

  test("writeBytes with a wrong expected digest stores nothing", async () => {
    const store = await newStore();
    await expect(store.writeBytes(new Uint8Array([1]), sha256("other"))).rejects.toThrow(DigestMismatchError);
    expect(await store.list()).toEqual([]);
  });

  test("commit verifies digest and size, deleting a bad file and never committing it", async () => {
    const store = await newStore();
    await mkdir(store.ingestDir, { recursive: true });
    const tmp = join(store.ingestDir, "x.tmp");
    await writeFile(tmp, "good");
    await expect(store.commit(tmp, sha256("good"), 5)).rejects.toThrow(BlobSizeMismatchError);
    expect(await Bun.file(tmp).exists()).toBe(false);
    await writeFile(tmp, "evil");
    await expect(store.commit(tmp, sha256("good"))).rejects.toThrow(DigestMismatchError);
    expect(await store.has(sha256("good"))).toBe(false);
    expect(await Bun.file(tmp).exists()).toBe(false);
    await writeFile(tmp, "good");
    await store.commit(tmp, sha256("good"), 4);
    expect(await store.has(sha256("good"))).toBe(true);
    expect(await readdir(store.ingestDir)).toEqual([]);
  });

  test("read of a missing blob throws BlobNotFoundError; remove deletes", async () => {
    const store = await newStore();
    await expect(store.read(sha256("nope"))).rejects.toThrow(BlobNotFoundError);
    const d = await store.writeBytes(new Uint8Array([1, 2, 3]));
    await store.remove(d);
    expect(await store.has(d)).toBe(false);
    expect(() => store.path("sha256:bad")).toThrow(SyntaxError);
  });

  test("list ignores stray files", async () => {
    const store = await newStore();
    await mkdir(join(store.root, "blobs", "sha256"), { recursive: true });
    await writeFile(join(store.root, "blobs", "sha256", "junk"), "x");
    const d = await store.writeBytes(new Uint8Array([9]));
    expect(await store.list()).toEqual([d]);
  });
});

describe("BlobStore.pull on a bad network (docker-registry behind a fault proxy)", () => {
  let reg: DockerRegistryHandle;
  let proxy: FaultProxy;
  let direct: RegistryClient;
  let viaProxy: RegistryClient;
  const MiB = 1 << 20;
  /** Loopback socket buffers: what a reset can throw away on the way. */
  const IN_FLIGHT = 2 * MiB;

  beforeAll(async () => {
    reg = await startDockerRegistry();
    proxy = await startFaultProxy(0, Number(reg.host.split(":")[1]));
    direct = new RegistryClient({ registry: reg.host, scheme: "http" });
    viaProxy = new RegistryClient({ registry: `127.0.0.1:${proxy.port}`, scheme: "http" });
  }, 60_000);
  afterAll(async () => {
    await proxy?.close();
    await reg?.stop();
  });

  const randomBlob = async (repo: string, n: number) => {
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(data.subarray(i, Math.min(n, i + 65536)));
    return { data, ...(await direct.pushBlob(repo, data)) };
  };
  /** Pulls through the proxy, returning what the store counted and what crossed the proxy. */
  const pullCounting = async (store: BlobStore, repo: string, desc: { digest: string; size: number }, opts: PullBlobOptions = {}) => {
    const down0 = proxy.bytesDown;
    let received = 0;
    const started = Date.now();
    const r = await store.pull(viaProxy, repo, desc, { ...opts, onReceived: (n) => (received += n) });
    return { ...r, received, wire: proxy.bytesDown - down0, ms: Date.now() - started };
  };

  test("an empty blob (a zero-length layer or config, valid OCI) is pulled and stored", async () => {
    const { digest, size } = await direct.pushBlob("t/empty", new Uint8Array());
    expect(size).toBe(0);
    const store = await newStore();
    expect((await store.pull(direct, "t/empty", { digest, size })).fetched).toBe(0);
    expect(await store.read(digest)).toEqual(new Uint8Array());
  }, 30_000);

  test("ten dropped connections during one blob: one call completes, each byte fetched about once", async () => {
    const { data, digest, size } = await randomBlob("t/drops", 16 * MiB);
    const store = await newStore();
    proxy.dropRepeatedly(MiB, 10);
    const r = await pullCounting(store, "t/drops", { digest, size });
    expect(proxy.pending).toBe(0);
    expect(await store.read(digest)).toEqual(data);
    expect(r.received).toBe(r.fetched);
    // Every drop loses at most what was in flight (the proxy counts bytes a reset then
    // discards from socket buffers); nothing starts over.
    expect(r.fetched).toBeLessThan(size + 10 * 512 * 1024);
    expect(r.wire).toBeLessThan(size + 10 * IN_FLIGHT + 64 * 1024);
  }, 60_000);

  test("a registry that takes the request and never answers (a frozen gateway) fails a manifest read after the answer timeout, not never", async () => {
    proxy.inject({ kind: "stall", afterBytes: 0, stallMs: 20_000 });
    const frozen = new RegistryClient({ registry: `127.0.0.1:${proxy.port}`, scheme: "http", answerTimeoutMs: 700 });
    const started = Date.now();
    const err = await frozen.getManifest("t/frozen", "latest").then(() => undefined, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(RegistryUnreachableError);
    expect(err?.message).toBe(`Cannot get manifest t/frozen:latest: registry 127.0.0.1:${proxy.port} gave no answer in 0.7 s`);
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 30_000);

  test("a full disk is said at once (ENOSPC), not retried as a lost connection for the minute of patience", async () => {
    const { digest, size } = await randomBlob("t/full", 2 * MiB);
    const dir = await mkdtemp(join(tmpdir(), "blobstore-full-"));
    dirs.push(dir);
    await run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", dir]);
    try {
      const started = Date.now();
      const err = await new BlobStore(dir).pull(direct, "t/full", { digest, size }).then(() => undefined, (e: unknown) => e as NodeJS.ErrnoException);
      expect({ code: err?.code, name: err?.name }).toEqual({ code: "ENOSPC", name: "Error" });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await run(["umount", dir]);
    }
  }, 30_000);

  test("a stalled connection is abandoned after the stall timeout and resumed with Range", async () => {
    const { digest, size } = await randomBlob("t/stall", 4 * MiB);
    const store = await newStore();
    proxy.inject({ kind: "stall", afterBytes: MiB, stallMs: 60_000 });
    const r = await pullCounting(store, "t/stall", { digest, size }, { stallTimeoutMs: 700 });
    expect(r.ms).toBeLessThan(10_000);
    expect(sha256(await store.read(digest))).toBe(digest);
    expect(r.fetched).toBeLessThan(size + 512 * 1024);
  }, 60_000);

  test("a registry down for 2 s mid-blob: the same call waits it out and resumes", async () => {
    const { digest, size } = await randomBlob("t/down", 4 * MiB);
    const store = await newStore();
    proxy.inject({ kind: "down", afterBytes: MiB, downMs: 2000 });
    const r = await pullCounting(store, "t/down", { digest, size });
    expect(proxy.applied.at(-1)?.kind).toBe("down");
    expect(r.ms).toBeGreaterThan(1900);
    expect(sha256(await store.read(digest))).toBe(digest);
    expect(r.fetched).toBeLessThan(size + 512 * 1024);
  }, 60_000);

  test("gives up once nothing arrived for patienceMs, keeping the partial for the next call", async () => {
    const { digest, size } = await randomBlob("t/gone", 12 * MiB);
    const store = await newStore();
    // Down well past the 1.5 s of patience, so a loaded machine's late timers cannot make it come back first.
    // The tries after the cut start about 0.05, 0.3 and 0.8 s after the last byte (the backoff's
    // steps); 1.5 s of patience then ends in the wait before the next one, so the last try is a
    // refused connection however slowly it was refused. (With 1 s, a try started at 0.8 s that took
    // over 0.2 s was cut by patience on a loaded machine and said "the link stalled".)
    proxy.inject({ kind: "down", afterBytes: 6 * MiB, downMs: 4000 });
    const err = await store.pull(viaProxy, "t/gone", { digest, size }, { patienceMs: 1500 }).catch((e) => e);
    while (proxy.isDown) await Bun.sleep(50);
    expect(err).toBeInstanceOf(DownloadStalledError);
    expect(err.message).toStartWith(`Cannot fetch blob ${digest} from 127.0.0.1:${proxy.port}/t/gone: no data arrived for 1.5 s (`);
    expect(err.message).toEndWith("; last try: connection refused (is it running at that address?))");
    const partial = await store.partialSize(digest);
    expect(partial).toBeGreaterThan(0);
    const r = await pullCounting(store, "t/gone", { digest, size });
    expect(r.fetched).toBe(size - partial);
    expect(sha256(await store.read(digest))).toBe(digest);
  }, 60_000);

  test("a server closing early keeps the verified part: the next call fetches only the rest", async () => {
    const { digest, size } = await randomBlob("t/trunc", 2 * MiB);
    const store = await newStore();
    proxy.inject({ kind: "truncate", afterBytes: MiB });
    const err = await store.pull(viaProxy, "t/trunc", { digest, size }, { retries: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(IncompleteBlobError);
    const partial = await store.partialSize(digest);
    expect(partial).toBeGreaterThan(64 * 1024);
    const r = await pullCounting(store, "t/trunc", { digest, size });
    expect(r.fetched).toBe(size - partial);
  }, 60_000);

  test("a partial holding foreign bytes is refetched once from scratch; a blob that never matches is fetched once", async () => {
    const { data, digest, size } = await randomBlob("t/foreign", MiB);
    const store = await newStore();
    await mkdir(store.ingestDir, { recursive: true });
    await writeFile(store.partialPath(digest), new Uint8Array(1000).fill(7));
    const r = await pullCounting(store, "t/foreign", { digest, size });
    expect(await store.read(digest)).toEqual(data);
    expect(r.fetched).toBe(size - 1000 + size);

    // The registry's copy is altered: same size, other bytes. One download, then a final error.
    const bad = await randomBlob("t/bad", MiB);
    const hex = bad.digest.slice(7);
    const onDisk = join(reg.dir, "data/docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
    const evil = bad.data.slice();
    evil[500]! ^= 0xff;
    await writeFile(onDisk, evil);
    let received = 0;
    const err = await store.pull(viaProxy, "t/bad", bad, { onReceived: (n) => (received += n) }).catch((e) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(received).toBe(bad.size);
    expect(await store.has(bad.digest)).toBe(false);
  }, 60_000);

  test("twenty blobs pulled four at a time share a few kept-alive connections", async () => {
    const blobs = await Promise.all(Array.from({ length: 20 }, (_, i) => randomBlob("t/many", 64 * 1024 + i)));
    const store = await newStore();
    const c0 = proxy.connections;
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < blobs.length) {
          const b = blobs[next++]!;
          await store.pull(viaProxy, "t/many", b);
        }
      }),
    );
    expect((await store.list()).length).toBe(20);
    expect(proxy.connections - c0).toBeLessThanOrEqual(4);
  }, 60_000);
});

test("retries without progress back off from 250 ms by doubling, never more than 5 s apart", () => {
  const waits = Array.from({ length: 12 }, (_, i) => backoffMs(i + 1));
  expect(waits.slice(0, 6)).toEqual([250, 500, 1000, 2000, 4000, 5000]);
  expect(Math.max(...waits)).toBe(5000);
});

describe("BlobStore.pull on a link that goes dead mid-blob (a local HTTP registry that stops sending)", () => {
  const KiB = 1024;
  const data = new Uint8Array(256 * KiB).map((_, i) => i % 251);
  const digest = sha256(data);
  let server: ReturnType<typeof Bun.serve>;
  /** When each blob request came. */
  let requests: number[] = [];
  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      // The first answer sends 64 KiB and then nothing more; later requests are taken and never answered.
      fetch(req) {
        requests.push(Date.now());
        if (requests.length > 1) return new Promise<Response>(() => {});
        const body = new ReadableStream({ start: (c) => c.enqueue(data.subarray(0, 64 * KiB)) });
        return new Response(body, { headers: { "content-length": String(data.length) } });
      },
    });
  });
  afterAll(() => server?.stop(true));

  test("gives up patienceMs after the last byte, starts no attempt past it, and says no data arrived, naming the blob and host", async () => {
    requests = [];
    const client = new RegistryClient({ registry: `127.0.0.1:${server.port}`, scheme: "http" });
    let lastByte = 0;
    const retries: number[] = [];
    const err = await (await newStore())
      .pull(client, "t/dead", { digest, size: data.length }, {
        // The stall is seen at 800 ms; the retry 50 ms later (that attempt brought bytes) would run to 1650 ms: cut at 1000.
        stallTimeoutMs: 800,
        patienceMs: 1000,
        onReceived: () => (lastByte = Date.now()),
        onRetry: (_, stalledMs) => retries.push(stalledMs),
      })
      .then(() => undefined, (e: Error) => e);
    const failedAfter = Date.now() - lastByte;
    expect(err).toBeInstanceOf(DownloadStalledError);
    expect(err?.message).toBe(`Cannot fetch blob ${digest} from 127.0.0.1:${server.port}/t/dead: no data arrived for 1 s (${64 * KiB} of ${data.length} bytes on disk; last try: the link stalled)`);
    // From the last byte, not from when the stalled attempt failed (800 ms later), nor after one attempt more.
    expect(failedAfter).toBeGreaterThanOrEqual(950);
    expect(failedAfter).toBeLessThan(1300);
    expect(retries[0]).toBeGreaterThanOrEqual(750); // the first retry: the stall, 800 ms after the last byte
    for (const t of requests) expect(t - lastByte).toBeLessThan(1000);
  }, 15_000);

  // NTP setting the wall clock mid-download (a board that booted at its image's date): Date.now()
  // jumps by `stepMs` at the first byte. Patience is the monotonic clock's: spent 1.5 s after the
  // last byte either way, not at the next stall (forward) nor after the step's length (back).
  for (const [way, stepMs] of [["forward", 12 * 3600_000], ["back", -12 * 3600_000]] as const) {
    test(`a wall-clock step ${way} mid-download neither spends nor stretches patience`, async () => {
      requests = [];
      const client = new RegistryClient({ registry: `127.0.0.1:${server.port}`, scheme: "http" });
      const realNow = Date.now;
      let lastByte = 0;
      try {
        const pulled = (await newStore())
          .pull(client, "t/dead", { digest, size: data.length }, {
            stallTimeoutMs: 300,
            patienceMs: 1500,
            onReceived: () => {
              lastByte = performance.now();
              Date.now = () => realNow() + stepMs;
            },
          })
          .then(() => "pulled", (e: Error) => e);
        const err = await Promise.race([pulled, Bun.sleep(5000).then(() => "still retrying 5 s on")]);
        const failedAfter = performance.now() - lastByte;
        expect(err).toBeInstanceOf(DownloadStalledError);
        expect(failedAfter).toBeGreaterThanOrEqual(1450);
        expect(failedAfter).toBeLessThan(2000);
      } finally {
        Date.now = realNow;
      }
    }, 15_000);
  }
});

test("retrySayer says the first retry of a stall, then at most one line per 10 s, and a new stall at once", () => {
  let t = 100_000;
  const lines: string[] = [];
  const say = retrySayer({ kind: "layer", digest: `sha256:${"ab".repeat(32)}` }, (l) => lines.push(l), { now: () => t });
  const why = new Error("Cannot fetch blob x from r: no data for 15 s after 1 of 2 bytes");
  say(why, 15_000);
  t += 5_000;
  say(why, 20_000); // within 10 s of the last line: quiet
  t += 6_000;
  say(why, 26_000);
  t += 3_000;
  say(why, 1_000); // bytes came since the last line (2 s after it): a new stall, said at once
  expect(lines).toEqual([
    "retrying layer abababababab: Cannot fetch blob x from r: no data for 15 s after 1 of 2 bytes (15 s so far without data; giving up after 60 s)",
    "retrying layer abababababab: Cannot fetch blob x from r: no data for 15 s after 1 of 2 bytes (26 s so far without data; giving up after 60 s)",
    "retrying layer abababababab: Cannot fetch blob x from r: no data for 15 s after 1 of 2 bytes (1 s so far without data; giving up after 60 s)",
  ]);
});
