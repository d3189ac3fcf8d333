/**
 * The reliability and security suite, full length: runs `bun test
 * test/reliability` with RELIABILITY_FULL=1 (50+ power cuts, 60 s of load,
 * more network faults), collects every case's outcome, prints the summary
 * table (tried / refused / survived per area) and, with --write, writes it to
 * bench/reliability/RESULTS.md. `--quick` runs the default (npm test) subset.
 * Exit status: that of `bun test`.
 *
 * @module
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { CaseResult } from "../test/reliability/_tally.ts";

const ROOT = resolve(import.meta.dir, "..");
const quick = process.argv.includes("--quick");
const write = process.argv.includes("--write");
const results = join(mkdtempSync(join(tmpdir(), "reliability-")), "results.jsonl");

const AREAS: Record<string, string> = {
  tuf: "TUF attacks (real client vs TufRepo)",
  bundle: "Malicious bundles, malformed compose/YAML",
  blob: "Blobs not matching their digest",
  access: "Gateway access control and bad JSON bodies (mTLS)",
  "power-cut": "Power cuts (SIGKILL of fioup update)",
  network: "Bad network (fault-injecting TCP proxy)",
  disk: "Disk full (48 MiB loop-mounted ext4)",
  load: "Load (devices with own certs, SIGKILL + restart)",
};

const started = Date.now();
const proc = Bun.spawn([process.execPath, "test", "--timeout", "900000", "test/reliability"], {
  cwd: ROOT,
  env: { ...process.env, RELIABILITY_RESULTS: results, ...(quick ? {} : { RELIABILITY_FULL: "1" }) },
  stdout: "inherit",
  stderr: "inherit",
});
const code = await proc.exited;
const minutes = ((Date.now() - started) / 60_000).toFixed(1);

const rows: CaseResult[] = existsSync(results)
  ? readFileSync(results, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as CaseResult)
  : [];
const suites = [...new Set([...Object.keys(AREAS), ...rows.map((r) => r.suite)])].filter((s) => rows.some((r) => r.suite === s));
const count = (s: string, o?: string) => rows.filter((r) => r.suite === s && (!o || r.outcome === o)).length;
const table = [
  "| area | tried | refused | survived | failed |",
  "|---|---:|---:|---:|---:|",
  ...suites.map((s) => `| ${AREAS[s] ?? s} | ${count(s)} | ${count(s, "refused")} | ${count(s, "survived")} | ${count(s, "failed")} |`),
  `| **total** | ${rows.length} | ${rows.filter((r) => r.outcome === "refused").length} | ${rows.filter((r) => r.outcome === "survived").length} | ${rows.filter((r) => r.outcome === "failed").length} |`,
].join("\n");
const failed = rows.filter((r) => r.outcome === "failed");
const notable = (s: string) => rows.filter((r) => r.suite === s).map((r) => `- ${r.name}: ${r.outcome}; ${r.detail}`);

process.stderr.write(`\n${table}\n\n`);
for (const f of failed) process.stderr.write(`FAILED [${f.suite}] ${f.name}: ${f.detail}\n`);

if (write) {
  const md = [
    "# Reliability and security results",
    "",
    `\`bun scripts/reliability.ts${quick ? " --quick" : ""} --write\` on ${new Date().toISOString().slice(0, 16)}Z, ${quick ? "default subset" : "RELIABILITY_FULL=1"}, ` +
      `${minutes} min, \`bun test\` exit ${code}. Machine: ${navigator.hardwareConcurrency} CPUs, Bun ${Bun.version}.`,
    "",
    "Refused = bad input or access rejected with a clear error and nothing changed. Survived = the",
    "fault happened and the system ended in a whole, correct state. Failed = neither (a bug: see below).",
    "",
    table,
    "",
    ...(failed.length ? ["## Failed", "", ...failed.map((f) => `- [${f.suite}] ${f.name}: ${f.detail}`), ""] : []),
    "## Details",
    "",
    ...suites.flatMap((s) => [`### ${AREAS[s] ?? s}`, "", ...(s === "access" ? notable(s).slice(0, 12).concat([`- ... ${count(s)} cases in all`]) : notable(s)), ""]),
  ].join("\n");
  writeFileSync(join(ROOT, "bench/reliability/RESULTS.md"), md);
  process.stderr.write("wrote bench/reliability/RESULTS.md\n");
}
process.exit(code);
