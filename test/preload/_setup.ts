/**
 * What the preload acceptance tests share: a real gateway (harness, restartable
 * on the same port), an upstream docker-registry holding busybox httpd images,
 * a containers repo published with `gateway publish` (the fioup tests'
 * Publisher), and `preload` run as the CLI a factory would run.
 *
 * @module
 */
import { join } from "node:path";
import { startGateway } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { asTestGateway, collectCli, ROOT, type CliResult } from "../fioup/_setup.ts";

export { asTestGateway };

const BUN = process.execPath;

/** `gateway serve` with a one-second polling interval (devices check often). */
export const startTestGateway = (dataDir?: string) => startGateway({ dataDir, args: ["--polling-seconds", "1"] });

export type PreloadRun = CliResult;

/** Runs `preload <args>` (as `bun preload/main.ts`, or $PRELOAD_BIN). */
export async function preload(args: string[], env: Record<string, string> = {}): Promise<PreloadRun> {
  const cmd = process.env.PRELOAD_BIN ? [process.env.PRELOAD_BIN] : [BUN, join(ROOT, "preload/main.ts")];
  const p = Bun.spawn([...cmd, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", cwd: ROOT });
  return await collectCli(p, `preload ${args.join(" ")}`, process.env.PRELOAD_TEST_VERBOSE);
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
