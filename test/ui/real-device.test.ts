/**
 * The dashboard with a device that a real fioup registered and updated (private dockerd, a real
 * app, `gateway publish`): the operator sees it in the list, on its current target, with its app
 * running, and its update's timeline step by step, in Debian's chromium.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type Browser } from "playwright-core";
import { goto, launchChromium, signIn } from "./_browser.ts";
import {
  Device, deviceOnV1, freePort, httpdCompose, httpdImage, pushImageDetailed, startDockerd, startDockerRegistry, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";

const APP = `uireal${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let uuid: string;
let browser: Browser;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  device = await Device.create(dockerd);
  const port = await freePort();
  const v1 = await deviceOnV1({ gw, upstream, device, app: APP, repo: `ui/real${process.pid}`, port, body: "ui v1" });
  uuid = v1.uuid;
  const { ref } = await pushImageDetailed(upstream, `ui/real${process.pid}`, "v2", httpdImage("ui v2"));
  await v1.pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await v1.pub.publish(2);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v2 update failed: ${r.stderr}`);
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await device?.cleanup([APP]);
  await Promise.allSettled([gw?.stop(), upstream?.stop(), dockerd?.stop()]);
});

test("a device registered and updated by a real fioup shows its target, its app and each step of its update", async () => {
  const { ctx, page } = await signIn(browser, gw.url, gw.adminToken);

  await goto(page, `${gw.url}/ui/devices?q=test-device`);
  await page.getByRole("link", { name: "test-device" }).click();
  await page.waitForURL(`${gw.url}/ui/devices/${uuid}`);
  await expect(page.locator("[data-current-target]").textContent()).resolves.toBe("amd64-linux-2");
  // fioup reports its app states after the update: the app of target 2 runs, its service too.
  const apps = page.locator("section[aria-labelledby=h-apps]");
  await apps.getByText("web: running").waitFor({ timeout: 15_000 });
  await expect(apps.locator("strong").allTextContents()).resolves.toEqual([APP]);
  const steps = await page.locator("ol.timeline li strong").allTextContents();
  for (const step of ["Download started", "Download completed", "Installation started", "Installation applied", "Installation completed"]) {
    expect(steps).toContain(step);
  }
  await ctx.close();
}, 90_000);
