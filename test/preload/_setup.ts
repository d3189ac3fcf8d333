/**
 * What the preload acceptance tests share: a real gateway (harness, restartable
 * on the same port), an upstream docker-registry holding busybox httpd images,
 * a containers repo published with `gateway publish` (the fioup tests'
 * Publisher), and `preload` run as the CLI a factory would run.
 *
 * @module
 */
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { ROOT, type TestGateway } from "../fioup/_setup.ts";

const BUN = process.execPath;

/** The harness gateway in the shape the fioup test helpers (Publisher) take. */
export function asTestGateway(gw: GatewayHandle): TestGateway {
  return {
    url: gw.url,
    host: gw.host,
    dataDir: gw.dataDir,
    adminToken: gw.adminToken,
    pid: gw.pid,
    stop: () => gw.stop(),
    async admin<T>(path: string, init: RequestInit = {}) {
      const headers = new Headers(init.headers);
      headers.set("content-type", "application/json");
      const res = await gw.adminFetch(path, { ...init, headers });
      if (!res.ok) throw new Error(`admin ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    },
  };
}

/** `gateway serve` with a one-second polling interval (devices check often). */
export const startTestGateway = (dataDir?: string) => startGateway({ dataDir, args: ["--polling-seconds", "1"] });

export interface PreloadRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed when --json was given and it parsed. */
  json: any;
}

/** Runs `preload <args>` (as `bun preload/main.ts`, or $PRELOAD_BIN). */
export async function preload(args: string[], env: Record<string, string> = {}): Promise<PreloadRun> {
  const cmd = process.env.PRELOAD_BIN ? [process.env.PRELOAD_BIN] : [BUN, join(ROOT, "preload/main.ts")];
  const p = Bun.spawn([...cmd, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", cwd: ROOT });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (process.env.PRELOAD_TEST_VERBOSE) process.stderr.write(`$ preload ${args.join(" ")} -> ${code}\n${stderr}`);
  let json: any;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}

/** Writes a factory-config.yml into a new temp dir; returns its path. */
export async function factoryConfig(text: string): Promise<string> {
  const p = join(await tempDir("factory-config-"), "factory-config.yml");
  await Bun.write(p, text);
  return p;
}

/** A factory-config.yml preloading `shortlist` (comma-separated) from master. */
export const preloadConfig = (shortlist?: string) =>
  `containers:\n  preloaded_images:\n    enabled: true\n${shortlist ? `    shortlist: "${shortlist}"\n` : ""}`;
