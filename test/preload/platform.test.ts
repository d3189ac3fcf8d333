/**
 * The image platform preload asks for is checked against what the images are: a single-platform
 * image whose config says another architecture than --platform (or the one --hwid maps to) is
 * refused naming the app, the service and the image, before a layer is fetched; an image that
 * matches is preloaded.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { Publisher, httpdCompose, httpdImage, pushImage, startDockerRegistry, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { asTestGateway, factoryConfig, preload, preloadConfig, startTestGateway } from "./_setup.ts";

const A = "pl6a";
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let work: string;
let fc: string;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway()]);
  // A single-platform image (no index): its config says linux/amd64.
  const a = await pushImage(upstream, `test/${A}`, "v1", httpdImage(`${A} v1`));
  const pub = await Publisher.create(asTestGateway(gw), upstream, { [`${A}/docker-compose.yml`]: httpdCompose(a, 18096) });
  await pub.publish(1);
  work = await tempDir("preload-platform-");
  fc = await factoryConfig(preloadConfig());
}, 120_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
});

const fromGateway = () => ["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux"];

describe("--platform against the images", () => {
  test("an amd64 image preloaded for linux/arm64 is refused (exit 31) naming app, service and image, and no image is written", async () => {
    const out = join(work, "arm64");
    const r = await preload([...fromGateway(), "--platform", "linux/arm64", "--out", out]);
    expect(r.code, r.stderr).toBe(31);
    expect(r.stderr).toMatch(new RegExp(`Cannot resolve app ${A} \\(.+\\): service \\S+ image \\S+@sha256:[0-9a-f]{64} is for linux/amd64, not linux/arm64 \\(its config says so`));
    expect(r.stderr).not.toMatch(/^\[\d+\/\d+\] layer/m);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  test("the same image for its own platform is preloaded", async () => {
    const r = await preload([...fromGateway(), "--platform", "linux/amd64", "--out", join(work, "amd64")]);
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
});
