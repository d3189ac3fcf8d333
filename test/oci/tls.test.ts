import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildBusyboxImage } from "../harness/images.ts";
import { freePort, run, tempDir, type Proc } from "../harness/tmp.ts";
import { registryConfig, startRegistryProcess } from "../harness/docker-registry.ts";
import { BlobStore, pullImage, pushImageFromStore, RegistryClient, RegistryUnreachableError } from "../../lib/oci/index.ts";

// bunfig.toml's [test] timeout is not applied by bun 1.4.5: these tests start real services.
setDefaultTimeout(60_000);

// A docker-registry serving HTTPS with a private CA and requiring client certificates: the
// shape of the gateway's registry as a device sees it.
let dir: string;
let proc: Proc;
let host: string;
const pem = (name: string) => readFileSync(join(dir, name), "utf8");

async function issue(name: string, cn: string, ext: string): Promise<void> {
  const o = (f: string) => join(dir, f);
  await run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", `/CN=${cn}`, "-keyout", o(`${name}.key`), "-out", o(`${name}.csr`)]);
  writeFileSync(o(`${name}.ext`), ext);
  await run(["openssl", "x509", "-req", "-in", o(`${name}.csr`), "-CA", o("ca.pem"), "-CAkey", o("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", o(`${name}.ext`), "-out", o(`${name}.pem`)]);
}

beforeAll(async () => {
  dir = await tempDir("tls-registry-");
  await run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=test ca", "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.pem")]);
  await issue("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await issue("client", "device-1", "extendedKeyUsage=clientAuth\n");
  const port = await freePort();
  host = `127.0.0.1:${port}`;
  proc = await startRegistryProcess({
    name: "docker-registry (mTLS)",
    dir,
    config: registryConfig({
      dir,
      host,
      http: `  tls:
    certificate: ${join(dir, "server.pem")}
    key: ${join(dir, "server.key")}
    clientcas:
      - ${join(dir, "ca.pem")}
`,
    }),
    readyWhat: "answer on /v2/ over TLS",
    ready: async () => {
      const res = await fetch(`https://${host}/v2/`, { tls: { ca: pem("ca.pem"), cert: pem("client.pem"), key: pem("client.key") }, signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return res.status === 200;
    },
  });
}, 60_000);
afterAll(async () => {
  await proc?.stop();
});

describe("TLS with a private CA and client certificates", () => {
  test("a client with the CA and a client certificate pushes and pulls", async () => {
    const client = new RegistryClient({ registry: host, tls: { ca: pem("ca.pem"), cert: pem("client.pem"), key: pem("client.key") } });
    expect(client.baseUrl).toBe(`https://${host}`);
    const img = await buildBusyboxImage({ files: { "/tls": "x" } });
    const store = new BlobStore(await tempDir("oci-tls-"));
    for (const l of img.layers) await store.writeBytes(l.gz);
    await store.writeBytes(img.config);
    await store.writeBytes(img.manifest);
    await pushImageFromStore(client, "t/tls", "1", store, img.manifestDigest, { chunkSize: 100_000 });
    const dst = new BlobStore(await tempDir("oci-tls-dst-"));
    expect((await pullImage(client, "t/tls", "1", dst, { platform: { os: "linux", architecture: "amd64" } })).configDigest).toBe(img.configDigest);
  });

  test("without the client certificate the connection is refused", async () => {
    const client = new RegistryClient({ registry: host, tls: { ca: pem("ca.pem") } });
    await expect(client.ping()).rejects.toThrow(RegistryUnreachableError);
  });

  test("without the CA the server certificate is not trusted", async () => {
    const client = new RegistryClient({ registry: host, tls: { cert: pem("client.pem"), key: pem("client.key") } });
    const err = await client.ping().catch((e) => e);
    expect(err).toBeInstanceOf(RegistryUnreachableError);
    expect((err as Error).message).toContain(`Cannot GET https://${host}/v2/`);
  });

  test("a registry that is not running is said in words, not in Bun's text", async () => {
    const err = await new RegistryClient({ registry: "127.0.0.1:1" }).ping().catch((e) => e);
    expect(err).toBeInstanceOf(RegistryUnreachableError);
    expect((err as Error).message).toBe("Cannot GET https://127.0.0.1:1/v2/: connection refused (is it running at that address?)");
  });
});
