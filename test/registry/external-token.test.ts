/**
 * An external registry (Debian's docker-registry, CNCF distribution) that uses the gateway as its
 * token realm, configured from deploy/docker-registry/config.yml: CI pushes with an admin token,
 * a device pulls its factory's repositories with its own certificate and nothing else, and a
 * token a device signs itself (with its factory-CA certificate) is refused by the registry.
 * `gateway publish --registry` pushes there with its --token alone (no Docker config), and fioup's
 * own registry clients pull with the device certificate.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { digestBytes } from "../../lib/oci/digest.ts";
import { RegistryClient, RegistryError, RegistryUnreachableError } from "../../lib/oci/registry-client.ts";
import type { Config } from "../../fioup/config.ts";
import type { DeviceClient } from "../../fioup/device-client.ts";
import { registryFactory } from "../../fioup/update/context.ts";
import { startDockerRegistry } from "../harness/docker-registry.ts";
import { containersRepo, git, pushUpstreamNginx } from "../publish/_setup.ts";
import { factoryConfig, preload, preloadConfig } from "../preload/_setup.ts";
import { privateKeyFromPem, SIGN_ALG } from "../../gateway/pki/keys.ts";
import { x509 } from "../../gateway/pki/x509.ts";
import { post, tlsFetch } from "../gateway/_client.ts";
import { makeDeviceCsr } from "../gateway/_device.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { renderDeployConfig } from "../harness/proxies.ts";
import { startRegistryProcess } from "../harness/docker-registry.ts";
import { freePort, portAnswers, tempDir, type Proc } from "../harness/tmp.ts";

let gw: GatewayHandle;
let registry: Proc;
let regHost: string;
let device: { cert: string; key: string };

beforeAll(async () => {
  gw = await startGateway({ args: ["--external-registry-service", "fleet-registry"] });
  const dir = await tempDir("ext-registry-");
  const port = await freePort();
  regHost = `127.0.0.1:${port}`;
  writeFileSync(join(dir, "token.pem"), readFileSync(join(gw.dataDir, "pki", "registry-token.pem")));
  registry = await startRegistryProcess({
    name: "docker-registry",
    dir,
    config: renderDeployConfig("docker-registry/config.yml", {
      LISTEN: regHost,
      DATA: join(dir, "data"),
      GATEWAY_URL: gw.url,
      SERVICE: "fleet-registry",
      ISSUER: "main-gateway",
      TOKEN_CERT: join(dir, "token.pem"),
    }),
    ready: () => portAnswers(port),
    readyWhat: `port ${port}`,
  });

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

test("gateway publish --registry pushes to it with --token alone (no Docker config); fioup pulls the app with its certificate", async () => {
  const upstream = await startDockerRegistry();
  try {
    await pushUpstreamNginx(upstream);
    const repo = await containersRepo({ "httpd/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n" });
    await git(repo, "branch", "main");
    const noDockerConfig = await tempDir("no-docker-config-");
    const p = Bun.spawn(
      [process.execPath, join(import.meta.dir, "..", "..", "gateway", "main.ts"), "publish", "--containers", repo, "--ref", "refs/heads/main", "--server", gw.url, "--token", gw.adminToken,
        "--registry", regHost, "--insecure-registry", regHost, "--mirror", `docker.io=${upstream.host}`, "--insecure-registry", upstream.host, "--platform", "linux/amd64", "--format", "json"],
      { stdout: "pipe", stderr: "pipe", env: { ...process.env, DOCKER_CONFIG: noDockerConfig, GATEWAY_TOKEN: "" } },
    );
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
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
