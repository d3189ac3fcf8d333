import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { stat } from "node:fs/promises";
import { Hono } from "hono";
import { createRegistry, createTokenEndpoint } from "../../gateway/registry/index.ts";
import { buildBusyboxImage } from "../harness/images.ts";
import { freePort, tempDir } from "../harness/tmp.ts";
import { BlobStore, pullImage, pushImageFromStore, RegistryClient, RegistryError, sha256 } from "../../lib/oci/index.ts";
import { startCuttingProxy, type CuttingProxy } from "./_proxy.ts";

// lib/oci's client against the gateway's own embedded registry (gateway/registry), served on
// loopback with the admin-token policy the gateway uses: interop between the two halves.
setDefaultTimeout(60_000);

const ADMIN = "admin-token-for-tests";
let server: ReturnType<typeof Bun.serve>;
let host: string;
let proxy: CuttingProxy;

const isAdmin = (authorization: string | undefined) => {
  if (!authorization) return false;
  if (authorization === `Bearer ${ADMIN}`) return true;
  const m = /^Basic (.+)$/.exec(authorization);
  return m ? Buffer.from(m[1]!, "base64").toString().split(":").slice(1).join(":") === ADMIN : false;
};

beforeAll(async () => {
  const port = await freePort();
  host = `127.0.0.1:${port}`;
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const app = new Hono();
  app.route("/", createTokenEndpoint({ secret, checkCredentials: (_u, p) => (p === ADMIN ? "admin" : undefined), allowed: () => true }));
  app.route("/", createRegistry({ root: await tempDir("embedded-registry-"), authorize: (c) => isAdmin(c.req.header("authorization")), tokenRealm: `http://${host}/token`, tokenSecret: secret }));
  server = Bun.serve({ hostname: "127.0.0.1", port, fetch: app.fetch });
  proxy = await startCuttingProxy(port);
});
afterAll(async () => {
  await proxy?.close();
  server?.stop(true);
});

async function storeWithImage(files: Record<string, string>) {
  const store = new BlobStore(await tempDir("oci-embedded-"));
  const img = await buildBusyboxImage({ files });
  for (const l of img.layers) await store.writeBytes(l.gz);
  await store.writeBytes(img.config);
  await store.writeBytes(img.manifest);
  return { store, img };
}
const amd64 = { os: "linux", architecture: "amd64" };

describe("lib/oci against the embedded registry", () => {
  test("anonymous clients are refused; the admin token works as Bearer and via the token flow", async () => {
    const anon = new RegistryClient({ registry: host, scheme: "http" });
    expect(((await anon.ping().catch((e) => e)) as RegistryError).status).toBe(401);

    const direct = new RegistryClient({ registry: host, scheme: "http", auth: { token: ADMIN } });
    const { store, img } = await storeWithImage({ "/e": "1" });
    const r = await pushImageFromStore(direct, "main/app", "v1", store, img.manifestDigest, { chunkSize: 64 * 1024 });
    expect(r.digest).toBe(img.manifestDigest);

    const viaToken = new RegistryClient({ registry: host, scheme: "http", auth: { username: "ci", password: ADMIN } });
    const dst = new BlobStore(await tempDir("oci-embedded-dst-"));
    const p = await pullImage(viaToken, "main/app", "v1", dst, { platform: amd64 });
    expect(p.configDigest).toBe(img.configDigest);
    expect(p.fetched).toBe(img.config.length + img.layers[0]!.gz.length);

    const again = await pushImageFromStore(viaToken, "main/app", "v2", store, img.manifestDigest);
    expect(again.uploadedBytes).toBe(0);
    expect(await viaToken.mountBlob("main/other", img.layers[0]!.digest, "main/app")).toBe(true);
  });

  test("tags list paginates with n and Link", async () => {
    const client = new RegistryClient({ registry: host, scheme: "http", auth: { token: ADMIN } });
    const { store, img } = await storeWithImage({ "/t": "tags" });
    const tags = ["a", "b", "c", "d", "e"];
    for (const t of tags) await pushImageFromStore(client, "main/tags", t, store, img.manifestDigest);
    expect(await client.listTags("main/tags", { pageSize: 2 })).toEqual(tags);
  });

  test("an interrupted blob download resumes with Range", async () => {
    const client = new RegistryClient({ registry: host, scheme: "http", auth: { token: ADMIN } });
    const data = crypto.getRandomValues(new Uint8Array(60_000));
    const big = new Uint8Array(60_000 * 40);
    for (let i = 0; i < 40; i++) big.set(data, i * 60_000);
    big[5] = 1;
    const { digest, size } = await client.pushBlob("main/big", big);
    const viaProxy = new RegistryClient({ registry: `127.0.0.1:${proxy.port}`, scheme: "http", auth: { token: ADMIN } });
    const store = new BlobStore(await tempDir("oci-embedded-resume-"));
    proxy.cutAfter(1024 * 1024);
    await expect(store.pull(viaProxy, "main/big", { digest, size }, { retries: 0 })).rejects.toThrow();
    const partial = (await stat(store.partialPath(digest))).size;
    expect(partial).toBeGreaterThan(0);
    const r = await store.pull(viaProxy, "main/big", { digest, size });
    expect(r.fetched).toBe(size - partial);
    expect(sha256(await store.read(digest))).toBe(digest);
  });
});
