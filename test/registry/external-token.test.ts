/**
 * An external registry (Debian's docker-registry, CNCF distribution) that uses the gateway as its
 * token realm, configured from deploy/docker-registry/config.yml: CI pushes with an admin token,
 * a device pulls its factory's repositories with its own certificate and nothing else, and a
 * token a device signs itself (with its factory-CA certificate) is refused by the registry.
 * `gateway publish --registry` pushes there with its --token alone (no Docker config), and fioup's
 * own registry clients pull with the device certificate. A realm the client cannot trust (the
 * gateway under a name --server does not give) fails publish with exit 15 and preload with 30,
 * both naming it, preload suggesting only what helps (--ca with the factory CA).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { digestBytes } from "../../lib/oci/digest.ts";
import { RegistryClient, RegistryError, RegistryUnreachableError } from "../../lib/oci/registry-client.ts";
import type { Config } from "../../fioup/config.ts";
import type { DeviceClient } from "../../fioup/device-client.ts";
import { registryFactory } from "../../fioup/update/context.ts";
import { startDockerRegistry, startTokenRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { containersRepo, git, pushUpstreamNginx } from "../publish/_setup.ts";
import { factoryConfig, preload, preloadConfig } from "../preload/_setup.ts";
import { privateKeyFromPem, SIGN_ALG } from "../../gateway/pki/keys.ts";
import { x509 } from "../../lib/x509/eager.ts";
import { post, tlsFetch } from "../gateway/_client.ts";
import { makeDeviceCsr } from "../gateway/_device.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir, type Proc } from "../harness/tmp.ts";

let gw: GatewayHandle;
let registry: Proc;
let regHost: string;
let device: { cert: string; key: string };

/** A docker-registry whose token realm is `realmUrl`/token, trusting this gateway's token certificate. */
const startExternalRegistry = (realmUrl: string, service = "fleet-registry") => startTokenRegistry({ realmUrl, service, tokenCert: join(gw.dataDir, "pki", "registry-token.pem") });

beforeAll(async () => {
  gw = await startGateway({ args: ["--external-registry-service", "fleet-registry"] });
  ({ proc: registry, host: regHost } = await startExternalRegistry(gw.url));

  const tokenRes = await gw.adminFetch("/admin/tokens", post({ tags: ["main"] }));
  const { token } = (await tokenRes.json()) as { token: string };
  const k = await makeDeviceCsr();
  const reg = await tlsFetch({ ca: gw.caPem })(`${gw.url}/devices`, {
    ...post({ name: "dev", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  });
  expect(reg.status).toBe(201);
  device = { cert: ((await reg.json()) as RegistrationResponse).certificate, key: k.keyPem };
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await gw?.stop();
}, 60_000);

const ci = () => new RegistryClient({ registry: regHost, scheme: "http", auth: { username: "ci", password: gw.adminToken }, tls: { ca: gw.caPem } });
const asDevice = () => new RegistryClient({ registry: regHost, scheme: "http", tls: { ca: gw.caPem, cert: device.cert, key: device.key } });

/** Pushes a one-layer image to `repo:tag` as CI; returns its manifest digest. */
async function pushImage(repo: string, tag: string): Promise<string> {
  const client = ci();
  const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
  const layer = crypto.getRandomValues(new Uint8Array(4096));
  await client.pushBlob(repo, config);
  await client.pushBlob(repo, layer);
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestBytes(config), size: config.byteLength },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: digestBytes(layer), size: layer.byteLength }],
    }),
  );
  return client.putManifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json");
}

test("CI pushes with a gateway token; the device pulls its factory's image with its certificate", async () => {
  const digest = await pushImage("main/web", "v1");
  const m = await asDevice().getManifest("main/web", "v1");
  expect(m.digest).toBe(digest);
});

test("the device cannot pull another factory's repository, nor push to its own", async () => {
  await pushImage("other/web", "v1");
  const denied = await asDevice().getManifest("other/web", "v1").then(() => undefined, (e: unknown) => e);
  expect(denied).toBeInstanceOf(RegistryError);
  expect([401, 403]).toContain((denied as RegistryError).status);
  const push = await asDevice().pushBlob("main/web", new Uint8Array([1, 2, 3])).then(() => undefined, (e: unknown) => e);
  expect(push).toBeInstanceOf(RegistryError);
});

test("a token a device signs itself with its factory-CA certificate is refused by the registry", async () => {
  const cert = new x509.X509Certificate(device.cert);
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const header = b64({ typ: "JWT", alg: "ES256", x5c: [Buffer.from(cert.rawData).toString("base64")] });
  const payload = b64({ iss: "main-gateway", sub: "me", aud: "fleet-registry", iat: now, nbf: now - 5, exp: now + 300, jti: "x", access: [{ type: "repository", name: "other/web", actions: ["pull", "push"] }] });
  const sig = await crypto.subtle.sign(SIGN_ALG, await privateKeyFromPem(device.key), new TextEncoder().encode(`${header}.${payload}`));
  const res = await fetch(`http://${regHost}/v2/other/web/manifests/v1`, { headers: { authorization: `Bearer ${header}.${payload}.${Buffer.from(sig).toString("base64url")}` } });
  expect(res.status).toBe(401);
});

/**
 * Runs `gateway publish --registry <registry> --token <admin token>` with no Docker config, of an
 * app whose nginx image comes from `upstream`.
 */
async function publishTo(registry: string, upstream: DockerRegistryHandle): Promise<{ stdout: string; stderr: string; code: number }> {
  await pushUpstreamNginx(upstream);
  const repo = await containersRepo({ "httpd/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n" });
  await git(repo, "branch", "main");
  const p = Bun.spawn(
    [process.execPath, join(import.meta.dir, "..", "..", "gateway", "main.ts"), "publish", "--containers", repo, "--ref", "refs/heads/main", "--server", gw.url, "--token", gw.adminToken,
      "--registry", registry, "--insecure-registry", registry, "--mirror", `docker.io=${upstream.host}`, "--insecure-registry", upstream.host, "--platform", "linux/amd64", "--format", "json"],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, DOCKER_CONFIG: await tempDir("no-docker-config-"), GATEWAY_TOKEN: "" } },
  );
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

test("gateway publish --registry pushes to it with --token alone (no Docker config); fioup pulls the app with its certificate", async () => {
  const upstream = await startDockerRegistry();
  try {
    const { stdout, stderr, code } = await publishTo(regHost, upstream);
    expect({ code, stderr: code ? stderr : "" }).toEqual({ code: 0, stderr: "" });
    const uri = (JSON.parse(stdout) as { apps: { uri: string }[] }).apps[0]!.uri;
    expect(uri.startsWith(`${regHost}/main/httpd@sha256:`)).toBe(true);

    // fioup's registry clients, as its update makes them: the device certificate goes to the gateway realm only.
    const clients = registryFactory({ server: gw.url } as Config, { tls: { ca: gw.caPem, cert: device.cert, key: device.key } } as DeviceClient);
    const m = await clients(regHost).getManifest("main/httpd", uri.slice(uri.indexOf("@") + 1));
    expect(m.digest).toBe(uri.slice(uri.indexOf("@") + 1));

    // preload from the gateway: the app's blobs come from the external registry, its token from the gateway.
    const out = join(await tempDir("preload-ext-"), "image");
    const pre = await preload(["--factory-config", await factoryConfig(preloadConfig()), "--ref", "refs/heads/main", "--server", gw.url, "--token", gw.adminToken,
      "--hwid", "x86_64-linux", "--insecure-registry", regHost, "--out", out, "--format", "dir"]);
    expect({ code: pre.code, stderr: pre.code ? pre.stderr : "" }).toEqual({ code: 0, stderr: "" });
    expect(pre.stdout).toContain("preloaded httpd");

    // An offline bundle of that target: its blobs from the external registry too.
    const bundle = join(await tempDir("export-ext-"), "bundle");
    const ex = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "..", "gateway", "main.ts"), "export", "--server", gw.url, "--token", gw.adminToken,
      "--target", "1", "--hwid", "x86_64-linux", "--insecure-registry", regHost, "--out", bundle], { stdout: "pipe", stderr: "pipe", env: { ...process.env, GATEWAY_TOKEN: "" } });
    expect({ code: ex.exitCode, stderr: ex.exitCode ? ex.stderr.toString() : "" }).toEqual({ code: 0, stderr: "" });
    expect(readFileSync(join(bundle, "index.json"), "utf8")).toContain("x86_64-linux-1");
  } finally {
    await upstream.stop();
  }
}, 180_000);

test("a realm whose certificate is not trusted is said as a realm that cannot be reached, naming it", async () => {
  const client = new RegistryClient({ registry: regHost, scheme: "http", realm: { origin: gw.url, auth: { token: gw.adminToken } } });
  const err = await client.getManifest("main/web", "v1").then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(RegistryUnreachableError);
  expect((err as Error).message).toStartWith(`Cannot get a token from ${gw.url}/token for ${regHost}: `);
});

test("preload with --server sends its gateway token to no registry but the gateway, not even one its target names", async () => {
  const seen: (string | null)[] = [];
  const elsewhere = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => (seen.push(req.headers.get("authorization")), new Response(null, { status: 404 })) });
  try {
    const app = `127.0.0.1:${elsewhere.port}/tools/httpd@sha256:${"b".repeat(64)}`;
    const entry = { length: 0, hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }, custom: { version: "8", hardwareIds: ["arm64-linux"], tags: ["elsewhere"], docker_compose_apps: { httpd: { uri: app } } } };
    expect((await gw.adminFetch("/admin/targets", post({ targets: { "arm64-linux-8": entry } }))).status).toBeLessThan(300);
    const out = join(await tempDir("preload-elsewhere-"), "image");
    const pre = await preload(["--factory-config", await factoryConfig(preloadConfig()), "--ref", "refs/heads/elsewhere", "--server", gw.url, "--token", gw.adminToken,
      "--hwid", "arm64-linux", "--insecure-registry", `127.0.0.1:${elsewhere.port}`, "--out", out, "--format", "dir"]);
    expect(pre.code, pre.stderr).not.toBe(0); // the registry has no such image
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.filter((a) => a?.includes(gw.adminToken) || (a?.startsWith("Basic ") && Buffer.from(a.slice(6), "base64").toString().includes(gw.adminToken)))).toEqual([]);
  } finally {
    elsewhere.stop(true);
  }
}, 120_000);

// A user who names the registry's service differently from the gateway's --external-registry-service
// got "returned 401" and nothing else: the gateway signed a token for its own registry, which the
// external one refused. Now the token request itself is refused, naming both names and the flag.
describe("a registry whose auth.token.service is not the gateway's --external-registry-service", () => {
  let other: { proc: Proc; host: string };
  beforeAll(async () => {
    other = await startExternalRegistry(gw.url, "fleet");
  }, 60_000);
  afterAll(async () => {
    await other?.proc.stop();
  }, 60_000);

  test("CI and a device are told the service names differ and which setting to change", async () => {
    const ciClient = new RegistryClient({ registry: other.host, scheme: "http", realm: { origin: gw.url, auth: { token: gw.adminToken }, tls: { ca: gw.caPem } } });
    const clients = registryFactory({ server: gw.url } as Config, { tls: { ca: gw.caPem, cert: device.cert, key: device.key } } as DeviceClient);
    for (const client of [ciClient, clients(other.host)]) {
      const err = await client.getManifest("main/web", "v1").then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as Error).message).toStartWith(`Cannot get a token from ${gw.url}/token: `);
      expect((err as Error).message).toContain(`"fleet-registry" (gateway serve --external-registry-service), not "fleet": the registry's auth.token.service must equal --external-registry-service`);
    }
  });
});

// The same gateway as realm under a name --server does not give (its certificate covers 127.0.0.1
// only): a realm whose certificate the client cannot check, as with a realm behind another CA.
describe("a token realm at an address other than --server, whose certificate is not trusted", () => {
  let other: { proc: Proc; host: string };
  let realm: string;
  beforeAll(async () => {
    realm = gw.url.replace("127.0.0.1", "localhost");
    other = await startExternalRegistry(realm);
  }, 60_000);
  afterAll(async () => {
    await other?.proc.stop();
  }, 60_000);

  test("gateway publish exits 15 (a registry cannot be reached) naming the realm's URL", async () => {
    const upstream = await startDockerRegistry();
    try {
      const { stderr, code } = await publishTo(other.host, upstream);
      expect({ code, stderr }).toEqual({ code: 15, stderr: expect.stringContaining(`Cannot get a token from ${realm}/token for ${other.host}: `) });
    } finally {
      await upstream.stop();
    }
  }, 180_000);

  test("preload with --server and --token says to give --ca with the factory CA, not the flags it has", async () => {
    const app = `${other.host}/main/httpd@sha256:${"a".repeat(64)}`;
    const entry = { length: 0, hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }, custom: { version: "7", hardwareIds: ["arm64-linux"], tags: ["realm"], docker_compose_apps: { httpd: { uri: app } } } };
    expect((await gw.adminFetch("/admin/targets", post({ targets: { "arm64-linux-7": entry } }))).status).toBeLessThan(300);
    const out = join(await tempDir("preload-realm-"), "image");
    const pre = await preload(["--factory-config", await factoryConfig(preloadConfig()), "--ref", "refs/heads/realm", "--server", gw.url, "--token", gw.adminToken,
      "--hwid", "arm64-linux", "--insecure-registry", other.host, "--out", out, "--format", "dir"]);
    expect(pre.code, pre.stderr).toBe(30);
    expect(pre.stderr).toContain(`Cannot reach ${realm.replace("https://", "")} over TLS`);
    expect(pre.stderr).toContain("Give --ca FILE with the CA that signed it (for the gateway's registry or a token realm at the gateway, the factory CA: its ca.pem)");
    expect(pre.stderr).not.toContain("--token with");
    expect(pre.stderr).not.toContain("--server URL");
  }, 120_000);
});
