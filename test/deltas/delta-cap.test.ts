/**
 * What one device can make the gateway compute: each new pair of layers it names costs the
 * gateway two unpacked layers on disk and a zstd of hundreds of MB, so a device asking many
 * distinct pairs at once must not get as many zstd runs at once. On a real gateway (TLS, a
 * registered device, images pushed by the admin as CI does): twelve distinct pairs asked at once
 * run at most two zstd at a time (the default cap per replica), the pairs past the cap and its
 * queue are answered "no delta" with the reason (the device fetches those layers whole), and a
 * pair asked again later is made and rebuilds the layer. A blob no image lists as a layer gets
 * no zstd at all.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGatewayServer } from "../../gateway/gateway.ts";
import { applyLayerDelta, type DeltaDescriptor } from "../../lib/oci/delta.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import { tlsFetch } from "../gateway/_client.ts";
import { registerDevice, type TlsDevice } from "../gateway/_register.ts";

const REPO = "main/app";
const LAYER = 24 << 20;
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

let dir: string;
let gw: Awaited<ReturnType<typeof startGatewayServer>>;
let device: TlsDevice;
let config: string;
/** The images' one layer each (uncompressed tars, as an image may carry them): v1..v5. */
const layers: { digest: string; bytes: Uint8Array }[] = [];

/** The most zstd processes of this test process (the gateway runs in it) seen at once, sampled until `stop`. */
function zstdSampler() {
  let peak = 0;
  const timer = setInterval(() => {
    const ps = Bun.spawnSync(["ps", "-o", "args=", "--ppid", String(process.pid)]).stdout.toString();
    peak = Math.max(peak, ps.split("\n").filter((l) => /^zstd\s/.test(l)).length);
  }, 50);
  return { stop: () => (clearInterval(timer), peak) };
}

const deltaUrl = (from: string, to: string) => `${gw.url}/v2/${REPO}/deltas?from=${from}&to=${to}`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "delta-cap-"));
  gw = await startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", log: () => {} });
  const admin = tlsFetch({ ca: gw.data.ca.certPem });
  const auth = { authorization: `Bearer ${gw.data.adminToken}` };
  const push = async (bytes: Uint8Array) => {
    const digest = sha256(bytes);
    const r = await admin(`${gw.url}/v2/${REPO}/blobs/uploads/?digest=${digest}`, { method: "POST", headers: { ...auth, "content-type": "application/octet-stream" }, body: bytes });
    if (r.status !== 201) throw new Error(`push ${r.status} ${await r.text()}`);
    return digest;
  };
  const configBytes = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
  config = await push(configBytes);
  // Five versions of one image: the same 24 MiB of random bytes with 64 KiB changed in each.
  const base = new Uint8Array(LAYER);
  for (let o = 0; o < LAYER; o += 65536) crypto.getRandomValues(base.subarray(o, o + 65536));
  for (let v = 1; v <= 5; v++) {
    const bytes = base.slice();
    crypto.getRandomValues(bytes.subarray(v << 20, (v << 20) + 65536));
    const digest = await push(bytes);
    layers.push({ digest, bytes });
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config, size: configBytes.byteLength },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest, size: bytes.byteLength }],
    };
    const r = await admin(`${gw.url}/v2/${REPO}/manifests/v${v}`, { method: "PUT", headers: { ...auth, "content-type": OCI_MANIFEST }, body: JSON.stringify(manifest) });
    if (r.status !== 201) throw new Error(`manifest ${r.status} ${await r.text()}`);
  }
  device = await registerDevice(gw.url, gw.data.adminToken, gw.data.ca.certPem);
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("twelve distinct pairs asked at once by one device run at most two zstd at a time; the rest are no delta, made when asked later", async () => {
  const pairs = layers.flatMap((a) => layers.filter((b) => b !== a).map((b) => [a.digest, b.digest] as const)).slice(0, 12);
  const sampler = zstdSampler();
  const answers = await Promise.all(pairs.map(([f, t]) => device.fetch(deltaUrl(f, t)).then(async (r) => ({ status: r.status, body: await r.text() }))));
  const peak = sampler.stop();
  console.error(`12 pairs at once: statuses ${answers.map((a) => a.status).join(",")}; peak concurrent zstd ${peak}`);
  expect(peak).toBeGreaterThanOrEqual(1); // the sampler sees the runs
  expect(peak).toBeLessThanOrEqual(2);
  // Two running and four waiting are made; the six beyond are refused at once, saying why.
  expect(answers.filter((a) => a.status === 200)).toHaveLength(6);
  const busy = answers.filter((a) => a.status === 404);
  expect(busy).toHaveLength(6);
  for (const a of busy) expect(JSON.parse(a.body).errors[0].message).toMatch(/^No delta from sha256:\w+ to sha256:\w+: the gateway is busy making other deltas \(2 at a time, 4 waiting\); a later request makes this one$/);

  // Asked again one by one, as a device's fetch step does, each refused pair is made and rebuilds its layer.
  const refused = pairs.filter((_, i) => answers[i]!.status === 404);
  for (const [from, to] of refused) {
    const r = await device.fetch(deltaUrl(from, to));
    expect(r.status).toBe(200);
    const desc = (await r.json()) as DeltaDescriptor;
    expect(desc.size).toBeLessThan(LAYER / 10);
    const blob = await device.fetch(`${gw.url}/v2/${REPO}/blobs/${desc.digest}`);
    expect(blob.status).toBe(200);
    const out = join(dir, "rebuilt.tar");
    const base = layers.find((l) => l.digest === from)!;
    const rebuilt = await applyLayerDelta({ base: new Blob([base.bytes]), baseSize: desc.fromSize, delta: new Blob([await blob.arrayBuffer()]), diffId: to, out });
    expect(rebuilt.digest).toBe(to);
    await rm(out, { force: true });
  }
}, 300_000);

test("a pair naming a blob no image lists as a layer (the image config) is no delta, and runs no zstd", async () => {
  const sampler = zstdSampler();
  const r = await device.fetch(deltaUrl(layers[0]!.digest, config));
  await Bun.sleep(200);
  expect(sampler.stop()).toBe(0);
  expect(r.status).toBe(404);
  expect(((await r.json()) as { errors: { message: string }[] }).errors[0]!.message).toBe(`No delta from ${layers[0]!.digest} to ${config}: ${config} is not a layer of any image manifest in repository "${REPO}"`);
});
