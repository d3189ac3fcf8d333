/**
 * What the offline tests share: `gateway export` run as an operator runs it on the gateway host,
 * and owner drop-ins that cut a device off from its gateway (or give it an expiry grace).
 *
 * @module
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../harness/tmp.ts";
import { ROOT, type Device, type TestGateway } from "../fioup/_setup.ts";

/** `gateway export` on the gateway host (its data dir names the gateway and the admin token); returns its stderr. */
export async function gatewayExport(gw: TestGateway, o: { target: number; from?: number; hwid: string; out: string; args?: string[] }): Promise<string> {
  const r = await run(
    [process.execPath, join(ROOT, "gateway/main.ts"), "export", "--data", gw.dataDir, "--target", String(o.target), ...(o.from ? ["--from", String(o.from)] : []),
      "--hwid", o.hwid, "--out", o.out, ...(o.args ?? [])],
    { cwd: ROOT },
  );
  return r.stderr + r.stdout; // the progress, then the summary
}

/** An owner drop-in on the device (later files win); `undefined` removes it. */
export function dropIn(device: Device, name: string, toml: string | undefined): void {
  const dir = join(device.root, "etc/sota/conf.d");
  mkdirSync(dir, { recursive: true });
  if (toml === undefined) rmSync(join(dir, name), { force: true });
  else writeFileSync(join(dir, name), toml);
}

/** The drop-in that leaves the device no route to its gateway: its URL is a loopback port nobody listens on. */
export const OFFLINE_DROP_IN = "90-offline.toml";
export const offlineToml = (closedPort: number) => `[tls]\nserver = "https://127.0.0.1:${closedPort}"\n`;

/** A bundle's index.json, parsed. */
export const bundleIndex = (dir: string) => JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
