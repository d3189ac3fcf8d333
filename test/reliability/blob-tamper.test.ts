/**
 * Registry blobs that do not match their digests: a real docker-registry
 * (distribution) whose blob files are changed on disk after the push, pulled
 * with lib/oci BlobStore.pull. Each is refused, nothing unverified reaches
 * blobs/, the bad partial is dropped, and the honest blob pulls fine after.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BlobStore, BlobTooLargeError, IncompleteBlobError } from "../../lib/oci/blob-store.ts";
import { DigestMismatchError } from "../../lib/oci/digest.ts";
import { RegistryClient } from "../../lib/oci/registry-client.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { tempDir } from "../harness/tmp.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("blob");
let reg: DockerRegistryHandle;
let client: RegistryClient;

beforeAll(async () => {
  reg = await startDockerRegistry();
  client = new RegistryClient({ registry: reg.host, scheme: "http" });
});
afterAll(async () => {
  tally.print();
  await reg?.stop();
});

/** Pushes random bytes; returns the descriptor and the registry's data file for them. */
async function pushRandom(n: number): Promise<{ digest: string; size: number; file: string }> {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  const { digest, size } = await client.pushBlob("rel/tamper", bytes);
  const hex = digest.slice(7);
  const file = join(reg.dir, "data/docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
  if (!existsSync(file)) throw new Error(`registry layout changed: no ${file}`);
  return { digest, size, file };
}

async function refusedPull(name: string, expected: abstract new (...a: never[]) => Error, tamper: (file: string, orig: Uint8Array) => void, prepare?: (store: BlobStore, digest: string) => void) {
  const b = await pushRandom(256 << 10);
  const orig = new Uint8Array(readFileSync(b.file));
  const store = new BlobStore(await tempDir("rel-blob-"));
  prepare?.(store, b.digest);
  tamper(b.file, orig);
  await tally.refuses(name, expected, () => store.pull(client, "rel/tamper", b, { retries: 1 }));
  expect(await store.has(b.digest)).toBe(false);
  expect(existsSync(join(store.root, "blobs/sha256")) ? readdirSync(join(store.root, "blobs/sha256")) : []).toEqual([]);
  if (!(expected === IncompleteBlobError)) expect(existsSync(store.partialPath(b.digest))).toBe(false);
  writeFileSync(b.file, orig); // the registry heals
  const again = await store.pull(client, "rel/tamper", b);
  expect(await store.has(b.digest)).toBe(true);
  expect(again.fetched).toBeGreaterThan(0);
}

describe("blobs that do not match their digest", () => {
  test("one byte flipped in the registry's copy is refused", async () => {
    await refusedPull("blob with one byte flipped", DigestMismatchError, (f, o) => {
      const t = o.slice();
      t[1000]! ^= 0xff;
      writeFileSync(f, t);
    });
  });

  test("a blob grown past its declared size is refused before it is all read", async () => {
    await refusedPull("blob longer than its descriptor", BlobTooLargeError, (f, o) => writeFileSync(f, Buffer.concat([o, new Uint8Array(4096)])));
  });

  test("a truncated blob is refused (and may be resumed later)", async () => {
    await refusedPull("blob shorter than its descriptor", IncompleteBlobError, (f, o) => writeFileSync(f, o.slice(0, o.length - 1000)));
  });

  test("a corrupted partial left on the device is not trusted: it is fetched again from scratch", async () => {
    const b = await pushRandom(256 << 10);
    const store = new BlobStore(await tempDir("rel-blob-"));
    mkdirSync(store.ingestDir, { recursive: true });
    writeFileSync(store.partialPath(b.digest), new Uint8Array(100 << 10).fill(7));
    // Resuming after the foreign bytes gives a digest mismatch; the store then discards the
    // partial and downloads the whole blob once more: what lands is the real blob, verified.
    const { fetched } = await store.pull(client, "rel/tamper", b);
    expect(await store.has(b.digest)).toBe(true);
    expect(new Bun.CryptoHasher("sha256").update(readFileSync(join(store.root, "blobs/sha256", b.digest.slice(7)))).digest("hex")).toBe(b.digest.slice(7));
    expect(fetched).toBeGreaterThanOrEqual(b.size); // the whole blob came again, the foreign prefix was not kept
    tally.record("partial download with foreign bytes, rest served honestly", "survived", `foreign partial discarded, whole blob fetched again (${fetched} bytes)`);
  });

});
