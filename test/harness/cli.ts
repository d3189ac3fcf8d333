/**
 * A CLI run in-process, as a user runs it from a shell (lib/cli runCli: parsing, messages, exit
 * code), with what it writes captured: a test of a flag's parsing or message then costs no
 * spawned binary. The one capture of process.stdout/stderr the tests share. And `gateway` run
 * as its own process, for a test of what a user sees from the command as a whole.
 *
 * @module
 */
import { join } from "node:path";
import { runCli, type CliSpec } from "../../lib/cli/command.ts";

const GATEWAY_MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");

/** What one run said: its exit code and everything it wrote to stdout and stderr. */
export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs `cli` with `argv`, stdout and stderr captured (and put back afterwards, whatever happens).
 *
 * @example
 * ```ts
 * expect(await runCliCaptured(cli, ["go", "--out="])).toMatchObject({ code: 2 });
 * ```
 */
export async function runCliCaptured(cli: CliSpec, argv: string[]): Promise<CliRun> {
  const [outWrite, errWrite] = [process.stdout.write, process.stderr.write];
  let [out, err] = ["", ""];
  process.stdout.write = ((chunk: string | Uint8Array) => ((out += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((err += String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await runCli(cli, argv);
    return { code, out, err };
  } finally {
    [process.stdout.write, process.stderr.write] = [outWrite, errWrite];
  }
}

/**
 * `gateway ARGS` as a process of its own, waited for, its output captured (the tests' one way to
 * run the gateway CLI as a user does from a shell).
 *
 * @example
 * ```ts
 * expect(gatewayRun(["devices", "list", "--data", dir]).code).toBe(0);
 * ```
 */
export function gatewayRun(args: string[]): CliRun {
  const r = Bun.spawnSync([process.execPath, GATEWAY_MAIN, ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}
