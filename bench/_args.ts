/**
 * Command-line options for the benchmarks: node:util's parseArgs plus `--help`, which prints the
 * benchmark's own module comment (what it measures, against which peer, and its usage line), and a
 * clear error for an unknown or malformed option instead of a stack trace.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";

/** parseArgs(config) for a benchmark's entry file; exits 0 after `--help`, 2 on bad options. */
export function benchArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  const argv = config.args ?? process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${aboutText(process.argv[1] ?? "")}\n`);
    process.exit(0);
  }
  try {
    return parseArgs(config);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\nRun with --help for the options.\n`);
    process.exit(2);
  }
}

/** The first doc comment of `file`, without its comment markers. */
function aboutText(file: string): string {
  try {
    const m = /\/\*\*([\s\S]*?)\*\//.exec(readFileSync(file, "utf8"));
    if (m) return m[1]!.split("\n").map((l) => l.replace(/^\s*\* ?/, "")).join("\n").replace(/@module\s*$/, "").trim();
  } catch {
    // fall through
  }
  return `Usage: bun ${file} [options]`;
}
