import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { buildBusyboxImage } from "../harness/images.ts";
import { tempDir } from "../harness/tmp.ts";
import { BlobStore, pullImage, pushImageFromStore, RegistryClient, RegistryError } from "../../lib/oci/index.ts";
import { startTokenRegistry, type TokenRegistry } from "./_token-registry.ts";

// bunfig.toml's [test] timeout is not applied by bun 1.4.5: these tests start real services.
setDefaultTimeout(60_000);

const creds = { user: "ci", password: "s3cret-pw" };
let basicReg: DockerRegistryHandle;
let tokenReg: TokenRegistry;

beforeAll(async () => {
  [basicReg, tokenReg] = await Promise.all([startDockerRegistry({ htpasswd: creds }), startTokenRegistry(creds)]);
});
afterAll(async () => {
  await basicReg?.stop();
  await tokenReg?.stop();
});

async function storeWithImage() {
  const store = new BlobStore(await tempDir("oci-auth-"));
  const img = await buildBusyboxImage({ files: { "/auth": "x" } });
  for (const l of img.layers) await store.writeBytes(l.gz);
  await store.writeBytes(img.config);
  await store.writeBytes(img.manifest);
  return { store, img };
}

describe("Basic auth (htpasswd)", () => {
  test("a client without credentials is refused with 401 UNAUTHORIZED", async () => {
    const anon = new RegistryClient({ registry: basicReg.host, scheme: "http" });
    const err = await anon.ping().catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
    expect((err as RegistryError).code).toBe("UNAUTHORIZED");
    const err2 = await anon.getManifest("t/x", "latest").catch((e) => e);
    expect((err2 as RegistryError).status).toBe(401);
  });

  test("wrong password is refused", async () => {
    const bad = new RegistryClient({ registry: basicReg.host, scheme: "http", auth: { username: creds.user, password: "nope" } });
    expect(((await bad.ping().catch((e) => e)) as RegistryError).status).toBe(401);
  });

  test("the right credentials push and pull", async () => {
    const client = new RegistryClient({ registry: basicReg.host, scheme: "http", auth: { username: creds.user, password: creds.password } });
    await client.ping();
    const { store, img } = await storeWithImage();
    const r = await pushImageFromStore(client, "t/basic", "v1", store, img.manifestDigest, { chunkSize: 64 * 1024 });
    expect(r.digest).toBe(img.manifestDigest);
    const dst = new BlobStore(await tempDir("oci-auth-dst-"));
    const p = await pullImage(client, "t/basic", "v1", dst, { platform: { os: "linux", architecture: "amd64" } });
    expect(p.configDigest).toBe(img.configDigest);
  });
});

describe("Bearer token flow (docker-registry with token auth)", () => {
  test("a client without credentials is refused by the token server", async () => {
    const anon = new RegistryClient({ registry: tokenReg.host, scheme: "http" });
    const err = await anon.getManifest("t/x", "latest").catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
  });

  test("gets a token per scope with Basic credentials, caches it, and pushes and pulls", async () => {
    const client = new RegistryClient({ registry: tokenReg.host, scheme: "http", auth: { username: creds.user, password: creds.password } });
    const { store, img } = await storeWithImage();
    tokenReg.tokenRequests.length = 0;
    const r = await pushImageFromStore(client, "t/bearer", "v1", store, img.manifestDigest);
    expect(r.digest).toBe(img.manifestDigest);
    expect(r.uploaded).toBe(2);
    const pushRequests = tokenReg.tokenRequests.length;
    expect(pushRequests).toBeGreaterThanOrEqual(1);
    expect(tokenReg.tokenRequests.every((t) => t.user === creds.user)).toBe(true);
    expect(tokenReg.tokenRequests.some((t) => t.scopes.includes("repository:t/bearer:pull,push"))).toBe(true);

    const dst = new BlobStore(await tempDir("oci-bearer-dst-"));
    const p = await pullImage(client, "t/bearer", "v1", dst, { platform: { os: "linux", architecture: "amd64" } });
    expect(p.configDigest).toBe(img.configDigest);
    const afterPull = tokenReg.tokenRequests.length;
    // a second pull reuses the cached pull token
    await pullImage(client, "t/bearer", "v1", new BlobStore(await tempDir("oci-bearer-dst2-")), { platform: { os: "linux", architecture: "amd64" } });
    expect(tokenReg.tokenRequests.length).toBe(afterPull);

    // cross-repository mount asks for both scopes at once
    expect(await client.mountBlob("t/bearer-copy", img.layers[0]!.digest, "t/bearer")).toBe(true);
    expect(tokenReg.tokenRequests.at(-1)!.scopes.sort()).toEqual(["repository:t/bearer-copy:pull,push", "repository:t/bearer:pull"]);
  });
});
