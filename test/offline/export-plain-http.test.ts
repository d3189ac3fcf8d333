/**
 * `gateway export` of a target whose apps live in another registry that speaks plain http (a
 * local docker-registry), without --insecure-registry: the TLS handshake fails, and the refusal
 * names the flag to give (as publish's does: gateway/publish/plain-http-hint.ts), exit 15, which
 * export's --help lists with the rest of its exit codes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { run, tempDir } from "../harness/tmp.ts";
import { freePort, httpdCompose, httpdImage, Publisher, pushImage, ROOT, startDockerRegistry, startTestGateway, type DockerRegistryHandle, type TestGateway } from "../fioup/_setup.ts";

let upstream: DockerRegistryHandle;
let gw: TestGateway;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway()]);
  const image = await pushImage(upstream, "test/plain", "v1", httpdImage("plain v1"));
  const pub = await Publisher.create(gw, upstream, { [`plain${process.pid}/docker-compose.yml`]: httpdCompose(image, await freePort()) });
  // The apps are pushed to the plain-http registry, not the gateway's: the target names it.
  await pub.publish(1, ["--registry", upstream.host]);
}, 120_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
});

const gatewayCli = (...args: string[]) => run([process.execPath, join(ROOT, "gateway/main.ts"), ...args], { cwd: ROOT, allowFail: true });

describe("gateway export from a plain-http registry", () => {
  test("without --insecure-registry: exit 15, naming the flag and the host; no --out left", async () => {
    const out = join(await tempDir("export-plain-"), "stick");
    const r = await gatewayCli("export", "--data", gw.dataDir, "--target", "1", "--hwid", "amd64-linux", "--out", out);
    expect(r.code).toBe(15);
    expect(r.stderr).toContain(`(if ${upstream.host} speaks plain http, add --insecure-registry ${upstream.host})`);
    expect(existsSync(out)).toBe(false);
  });

  test("with --insecure-registry: the bundle is written", async () => {
    const out = join(await tempDir("export-plain-"), "stick");
    const r = await gatewayCli("export", "--data", gw.dataDir, "--target", "1", "--hwid", "amd64-linux", "--out", out, "--insecure-registry", upstream.host);
    expect({ code: r.code, stderr: r.code ? r.stderr : "" }).toEqual({ code: 0, stderr: "" });
    expect(existsSync(join(out, "index.json"))).toBe(true);
  });

  test("export --help lists its exit codes, 15 and 20 among them", async () => {
    const r = await gatewayCli("export", "--help");
    expect(r.stdout).toContain("Exit codes:");
    expect(r.stdout).toMatch(/\n\s+15 {2}a registry refused or could not be reached/);
    expect(r.stdout).toMatch(/\n\s+20 {2}the gateway has no target with that version/);
  });
});
