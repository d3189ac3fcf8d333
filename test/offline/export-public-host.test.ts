/**
 * `gateway export --data DIR` on a gateway whose public URL (--public-url: a load balancer's) is
 * not its own listen address: its targets name the registry by the public host, and export, which
 * --data points at the local address, reads that registry through it (the host mapped, the
 * gateway's token and CA), instead of taking the public host for a stranger (system CA: "unable to
 * verify the first certificate", exit 15). The bundle keeps the public host: devices know it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { freePort, httpdCompose, httpdImage, Publisher, pushImage, ROOT, startDockerRegistry, startTestGateway, type DockerRegistryHandle, type TestGateway } from "../fioup/_setup.ts";
import { bundleIndex } from "./_setup.ts";

let proxy: FaultProxy;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let publicHost: string;

beforeAll(async () => {
  proxy = await startFaultProxy(0, 1);
  publicHost = `127.0.0.1:${proxy.port}`;
  [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway(["--public-url", `https://${publicHost}`])]);
  proxy.target = Number(new URL(gw.url).port);
  const image = await pushImage(upstream, "test/export-public", "v1", httpdImage("export public v1"));
  const viaProxy: TestGateway = { ...gw, url: `https://${publicHost}`, host: publicHost };
  const pub = await Publisher.create(viaProxy, upstream, { [`exppub${process.pid}/docker-compose.yml`]: httpdCompose(image, await freePort()) });
  await pub.publish(1);
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await Promise.all([gw?.stop(), upstream?.stop()]);
});

describe("gateway export --data on a gateway behind a balancer", () => {
  test("reads the registry the targets name by the public host through the local address; the bundle names the public host", async () => {
    const out = join(await tempDir("export-public-"), "stick");
    const r = await run([process.execPath, join(ROOT, "gateway/main.ts"), "export", "--data", gw.dataDir, "--target", "1", "--hwid", "amd64-linux", "--out", out], { cwd: ROOT, allowFail: true });
    expect({ code: r.code, err: r.code ? r.stderr : "" }).toEqual({ code: 0, err: "" });
    const repos = bundleIndex(out).manifests.map((m: { annotations: Record<string, string> }) => m.annotations["io.fioup.bundle.repository"]!.split("/")[0]);
    expect(repos.length).toBeGreaterThan(0);
    expect(new Set(repos)).toEqual(new Set([publicHost]));
  });
});
