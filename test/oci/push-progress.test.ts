/**
 * A blob pushed in one PUT reports its progress as the bytes go, not only once it is done, so
 * `gateway publish` shows a multi-GB layer moving; and the registry gets the same blob.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { tempDir } from "../harness/tmp.ts";
import { RegistryClient, sha256 } from "../../lib/oci/index.ts";

let reg: DockerRegistryHandle;

beforeAll(async () => {
  reg = await startDockerRegistry();
}, 60_000);
afterAll(async () => {
  await reg?.stop();
});

test("a monolithic upload reports the bytes sent while the PUT goes, ending at the blob's size", async () => {
  const client = new RegistryClient({ registry: reg.host, scheme: "http" });
  const data = new Uint8Array(8 << 20);
  for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  const p = join(await tempDir("oci-push-progress-"), "blob");
  await writeFile(p, data);
  const progress: [number, number][] = [];
  const r = await client.pushBlob("t/progress", { path: p }, { onProgress: (sent, total) => progress.push([sent, total]) });
  expect(r).toEqual({ digest: sha256(data), size: data.length });
  const during = progress.filter(([sent]) => sent > 0 && sent < data.length);
  expect(during.length, JSON.stringify(progress)).toBeGreaterThan(3);
  expect(progress.every(([, total]) => total === data.length)).toBe(true);
  expect(progress.map(([sent]) => sent)).toEqual(progress.map(([sent]) => sent).sort((a, b) => a - b));
  expect(progress.at(-1)).toEqual([data.length, data.length]);
  expect(await client.blobExists("t/progress", r.digest)).toBe(data.length);
}, 60_000);
