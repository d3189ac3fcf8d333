/**
 * `gateway publish` stopped mid-way, as a CI engineer's Ctrl-C or a cancelled CI job's SIGTERM
 * does it: it says so and what is left, exits 130 or 143, adds no target, stops its docker
 * build and leaves no scratch folder (saved images, often hundreds of MB) in the temp dir. The
 * build's output is shown while it runs, and on a terminal the push shows its progress.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { tempDir, until } from "../harness/tmp.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { signedTargets } from "./_inspect.ts";
import { containersRepo, loadBaseImage } from "./_setup.ts";

const GATEWAY_MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let dockerd: DockerdHandle;
let gw: GatewayHandle;

beforeAll(async () => {
  [dockerd, gw] = await Promise.all([startDockerd(), startGateway()]);
  await loadBaseImage(dockerd);
}, 180_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), dockerd?.stop()]);
}, 180_000);

/** Starts a publish of a repo whose build takes a minute, and sends `signal` once the build runs. */
async function stopMidBuild(signal: "SIGINT" | "SIGTERM"): Promise<{ code: number; stderr: string; tmp: string; marker: string }> {
  const marker = `slow-build-${crypto.randomUUID().slice(0, 8)}`;
  const repo = await containersRepo({
    "slow/Dockerfile": `FROM fixtures/busybox:latest\nRUN echo ${marker} && sleep 60\n`,
    "app/docker-compose.yml": "services:\n  slow:\n    image: slow\n",
  });
  const tmp = await tempDir("publish-tmpdir-");
  const p = Bun.spawn([process.execPath, GATEWAY_MAIN, "publish", "--containers", repo, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...dockerd.env, TMPDIR: tmp },
  });
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of p.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  await until("the docker build to start", () => stderr, (s) => s.includes("docker build slow/Dockerfile"), 60_000);
  // The build's container is running: the signal comes mid-build.
  await until("the build's container", () => dockerd.docker("ps", "--no-trunc", "--format", "{{.Command}}"), (out) => out.includes(marker), 30_000);
  p.kill(signal);
  const code = await p.exited;
  await reading;
  return { code, stderr, tmp, marker };
}

describe("gateway publish stopped mid-way", () => {
  for (const [signal, exit] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    test(`${signal} mid-build: exit ${exit}, says nothing was published, no target, no docker build left, no scratch folder`, async () => {
      const before = await signedTargets(gw);
      const r = await stopMidBuild(signal);
      expect(r.code, r.stderr).toBe(exit);
      expect(r.stderr).toContain(`gateway publish: stopped by ${signal}; no target was added, so devices see nothing new`);
      // The build's own output was shown as it ran (a long build is not silent), without the legacy builder's banner.
      expect(r.stderr).toContain(`image slow: | Step 2/2 : RUN echo ${r.marker} && sleep 60`);
      expect(r.stderr).not.toContain("DEPRECATED");
      expect(readdirSync(r.tmp)).toEqual([]);
      expect(await signedTargets(gw)).toEqual(before);
      // The engine ends the build once its client is gone: no container keeps running it.
      await until("the build to stop", () => dockerd.docker("ps", "-a", "--no-trunc", "--format", "{{.Command}}"), (out) => !out.includes(r.marker), 30_000);
    }, 120_000);
  }
});

describe("gateway publish on a terminal", () => {
  test("the push shows how much it sent, on one line rewritten in place", async () => {
    const repo = await containersRepo({
      "blob/Dockerfile": `FROM fixtures/busybox:latest\nRUN dd if=/dev/urandom of=/a bs=1M count=3 2>/dev/null\nRUN dd if=/dev/urandom of=/b bs=1M count=3 2>/dev/null\n`,
      "app/docker-compose.yml": "services:\n  blob:\n    image: blob\n",
    });
    const cmd = [process.execPath, GATEWAY_MAIN, "publish", "--containers", repo, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken].map((a) => `'${a}'`).join(" ");
    // script(1) gives publish a terminal for stdout and stderr, and copies what it wrote.
    const p = Bun.spawn(["script", "-qefc", cmd, "/dev/null"], { stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env, ...dockerd.env } });
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    expect(code, out).toBe(0);
    expect(out).toMatch(/\r\x1b\[Kpushing main\/blob: [\d.]+ (B|KiB|MiB) sent, of at most [\d.]+ MiB/);
    // The progress line is cleared before the next log line, which starts clean.
    expect(out).toMatch(/\r\x1b\[Kimage blob: pushed /);
  }, 120_000);
});
