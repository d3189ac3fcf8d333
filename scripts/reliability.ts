/**
 * The reliability and security suite, full length: runs `bun test
 * test/reliability` and the long files `npm test` leaves out (scripts/long-tests.ts)
 * with RELIABILITY_FULL=1 (every kill point, every crash
 * state, 10,000 devices for 60 s, more network faults), collects every case's
 * outcome and prints the tables: per area (tried / refused / survived), kill
 * points tried / hit / survived by name, raw bytes over the wire per case,
 * events acknowledged / stored after the gateway kill, refusals by reason.
 * With --write, writes them to bench/reliability/RESULTS.md. `--quick` runs
 * each file at its short size (RELIABILITY_FULL unset). Without `--db`, the load, power-cut, rollout-kills, rollout acceptance and fioup
 * end-to-end files run a second time with every gateway on PostgreSQL
 * (OTA_TEST_DB=postgres); `--db postgres|sqlite` runs everything on one store. It also runs
 * test/build/compiled-flow.test.ts, whose arm64 binary goes through the whole update flow under
 * qemu only here (npm test: its first case). Exit status: that of `bun test`
 * (a case "not tried", e.g. a kill point never reached, fails it too).
 *
 * Test files or directories named on the command line run alone instead of the whole
 * suite (the PostgreSQL pass only for the files among them, or under them, that it normally covers): the way to rerun one
 * area, e.g. to tell a failure caused by a loaded machine from a real one. The
 * written results name the commit the run started on and the machine's load
 * average during the run (sampled every 30 s).
 *
 * @module
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import type { CaseResult } from "../test/reliability/_tally.ts";
import { LONG_TESTS } from "./long-tests.ts";

const ROOT = resolve(import.meta.dir, "..");
const quick = process.argv.includes("--quick");
const write = process.argv.includes("--write");
const dbArg = process.argv.indexOf("--db");
const db = dbArg > 0 ? process.argv[dbArg + 1] : undefined;
if (db !== undefined && db !== "postgres" && db !== "sqlite") {
  process.stderr.write(`reliability: --db takes postgres or sqlite, not "${db}"\n`);
  process.exit(2);
}
if (process.argv.includes("--help")) {
  process.stdout.write(
    "Usage: bun scripts/reliability.ts [--quick] [--write] [--db postgres|sqlite] [test files...]\n" +
      "  --quick   each file at its short size (the sizes docs/reliability.md lists) instead of RELIABILITY_FULL=1\n" +
      "  --write   store the tables in bench/reliability/RESULTS.md (whole suite only)\n" +
      "  --db      run everything on one store, no second pass on PostgreSQL\n" +
      "  files     run only these test files or directories (e.g. test/reliability/load.test.ts) to rerun one area\n",
  );
  process.exit(0);
}
/** Test files named on the command line, relative to the repository (bun test runs there). */
const only = process.argv.slice(2).filter((a, i, all) => !a.startsWith("--") && all[i - 1] !== "--db").map((f) => {
  if (!existsSync(resolve(f))) {
    process.stderr.write(`reliability: no test file or directory ${f}\n`);
    process.exit(2);
  }
  return `./${relative(ROOT, resolve(f))}`;
});
if (only.length && write) {
  process.stderr.write("reliability: --write stores the whole suite's results; leave it out when naming files\n");
  process.exit(2);
}
const resultsDir = mkdtempSync(join(tmpdir(), "reliability-"));
const results = join(resultsDir, "results.jsonl");

const AREAS: Record<string, string> = {
  tuf: "TUF attacks (real client vs TufRepo)",
  bundle: "Malicious bundles, malformed compose/YAML",
  blob: "Blobs not matching their digest",
  access: "Gateway access control and bad JSON bodies (mTLS)",
  "power-cut": "Power cuts (SIGKILL of fioup update at named points)",
  durability: "Durability (fsync order; crash states from an strace)",
  network: "Bad network (fault-injecting TCP proxy)",
  disk: "Disk full (48 MiB loop-mounted ext4)",
  load: "Load (devices with own certs, gateway SIGKILLed under load)",
  "load@postgres": "Load on PostgreSQL (same run, OTA_TEST_DB=postgres)",
  "power-cut@postgres": "Power cuts with the gateway on PostgreSQL",
  "early-start": "Early start booted by systemd (systemd-nspawn, mmdebstrap root)",
  "rollout-kills": "Rollouts (gateway SIGKILLed in every wave, simulated devices)",
  "rollout-kills@postgres": "Rollouts with the gateway SIGKILLed, on PostgreSQL",
  "kanto-kill": "Kanto agent (fioup agent SIGKILLed at named points of an apply)",
  attacks: "Gateway attacks found by a probe (slow clients, deep JSON, scoped tokens...)",
  "replica-kill": "Signer replica SIGKILLed behind HAProxy under load (PostgreSQL)",
};

/**
 * The files of the whole suite: test/reliability, the compiled binaries' flow, and the long files
 * (scripts/long-tests.ts) that run here only, not in `npm test`. The second list runs again with
 * every gateway on PostgreSQL.
 */
const SUITE = ["test/reliability", "test/build/compiled-flow.test.ts", ...LONG_TESTS.filter((f) => !f.startsWith("test/reliability/")).map((f) => `./${f}`)];
const ON_POSTGRES = ["test/reliability/load.test.ts", "test/reliability/power-cuts.test.ts", "test/reliability/rollout-kills.test.ts", "test/rollouts/rollouts.test.ts", "test/fioup/update.test.ts"].map((f) => `./${f}`);

/** What the run ran on: the commit, and whether the working tree had uncommitted changes to tracked files. */
const git = (...args: string[]) => Bun.spawnSync(["git", ...args], { cwd: ROOT }).stdout.toString().trim();
const commit = git("rev-parse", "--short=12", "HEAD") || "unknown";
const dirty = git("status", "--porcelain", "--untracked-files=no").split("\n").filter(Boolean).length;
/** The 1-minute load average, sampled every 30 s while the tests run. */
const loadSamples: number[] = [loadavg()[0]!];
const sampler = setInterval(() => loadSamples.push(loadavg()[0]!), 30_000);

/** Tests bun reported as failed, `(fail) ...` lines, including files that keep no tally (compiled-flow). */
const failedTests: string[] = [];
/** Runs `bun test` with its output passed through as it comes, noting its `(fail)` lines; returns its exit code. */
async function bunTest(files: string[], env: Record<string, string | undefined>): Promise<number> {
  // Coloured (FORCE_COLOR, a terminal) bun marks a failed test "✗" instead of "(fail)": the child writes plain text.
  const plain = { ...env, FORCE_COLOR: undefined, NO_COLOR: "1" };
  const proc = Bun.spawn([process.execPath, "test", "--timeout", "900000", ...files], { cwd: ROOT, env: plain, stdout: "inherit", stderr: "pipe" });
  let rest = "";
  const decoder = new TextDecoder();
  // Escape codes, should any remain, go before matching.
  const note = (lines: string[]) =>
    failedTests.push(
      ...lines.map((l) => l.replace(/\x1b\[[0-9;]*m/g, "")).filter((l) => l.startsWith("(fail) ")).map((l) => `${env.OTA_TEST_DB === "postgres" ? "[postgres] " : ""}${l.slice(7)}`),
    );
  for await (const chunk of proc.stderr) {
    process.stderr.write(chunk);
    const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
    rest = lines.pop()!;
    note(lines);
  }
  note([rest]); // a last line without its newline
  return await proc.exited;
}

const started = Date.now();
// compiled-flow: in full length, the whole update flow also with the arm64 fioup under qemu (npm test runs its first case).
const testEnv = { ...process.env, RELIABILITY_RESULTS: results, ...(quick ? {} : { RELIABILITY_FULL: "1" }) };
let code = await bunTest(only.length ? only : SUITE, { ...testEnv, ...(db ? { OTA_TEST_DB: db } : {}) });
// The same flow with every gateway on PostgreSQL: publish, register, update, events, the load and its kill.
// A directory named on the command line stands for the files under it (test/reliability: load, power cuts, rollout kills).
const second = only.length ? ON_POSTGRES.filter((f) => only.some((o) => f === o || f.startsWith(`${o.replace(/\/+$/, "")}/`))) : ON_POSTGRES;
if (!db && second.length) {
  code = (await bunTest(second, { ...testEnv, OTA_TEST_DB: "postgres" })) || code;
}
clearInterval(sampler);
loadSamples.push(loadavg()[0]!);
const loadLine = `load average (1 min, sampled every 30 s) ${(loadSamples.reduce((a, b) => a + b, 0) / loadSamples.length).toFixed(1)} on average, ` +
  `${Math.min(...loadSamples).toFixed(1)} to ${Math.max(...loadSamples).toFixed(1)}`;
const minutes = ((Date.now() - started) / 60_000).toFixed(1);

const rows: CaseResult[] = existsSync(results)
  ? readFileSync(results, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as CaseResult)
  : [];
const suites = [...new Set([...Object.keys(AREAS), ...rows.map((r) => r.suite)])].filter((s) => rows.some((r) => r.suite === s));
const count = (s: string, o?: string) => rows.filter((r) => r.suite === s && (!o || r.outcome === o)).length;
const all = (o: string) => rows.filter((r) => r.outcome === o).length;
const areaTable = [
  "| area | tried | refused | survived | failed | not tried |",
  "|---|---:|---:|---:|---:|---:|",
  ...suites.map((s) => `| ${AREAS[s] ?? s} | ${count(s) - count(s, "not-tried")} | ${count(s, "refused")} | ${count(s, "survived")} | ${count(s, "failed")} | ${count(s, "not-tried")} |`),
  `| **total** | ${rows.length - all("not-tried")} | ${all("refused")} | ${all("survived")} | ${all("failed")} | ${all("not-tried")} |`,
].join("\n");
const fig = (r: CaseResult, k: string) => r.figures?.[k];
const mb = (n: unknown) => (typeof n === "number" ? `${(n / 1e6).toFixed(2)} MB` : "-");

// Kill points by name: tried (a run was started to cut there), hit (the marker says it did), survived.
const cuts = rows.filter((r) => r.suite === "power-cut" && fig(r, "point") !== undefined);
const points = [...new Set(cuts.map((r) => String(fig(r, "point"))))];
const killTable = [
  "| kill point | tried | hit | survived | bytes over the wire, raw (cut run + rerun) | update size | in flight at the cut | fioup's own count (capped) |",
  "|---|---:|---:|---:|---:|---:|---:|---:|",
  ...points.map((p) => {
    const rs = cuts.filter((r) => fig(r, "point") === p);
    const last = rs.at(-1)!;
    return `| ${p} | ${rs.length} | ${rs.filter((r) => fig(r, "hit") === true).length} | ${rs.filter((r) => r.outcome === "survived").length} | ` +
      `${mb(fig(last, "wireRun1"))} + ${mb(fig(last, "wireRun2"))} | ${mb(fig(last, "updateSize"))} | ${mb(fig(last, "inflight"))} | ${mb(fig(last, "fioupCapped"))} |`;
  }),
].join("\n");

const net = rows.filter((r) => r.suite === "network" && fig(r, "wire") !== undefined);
const netTable = [
  "| network case | bytes carried by the proxy, raw | bound (new blobs + overhead/run + 1 MiB/fault) | new blobs | faults | runs |",
  "|---|---:|---:|---:|---:|---:|",
  ...net.map((r) => `| ${r.name} | ${mb(fig(r, "wire"))} | ${mb(fig(r, "bound"))} | ${mb(fig(r, "newBytes"))} | ${fig(r, "faults")} | ${fig(r, "runs")} |`),
].join("\n");

const load = rows.filter((r) => r.suite === "load" && fig(r, "acked") !== undefined);
const loadTable = [
  "| load run | store | events acknowledged | stored | stored twice | acked but missing | posts sent again |",
  "|---|---|---:|---:|---:|---:|---:|",
  ...load.map((r) => `| ${r.name} | ${fig(r, "db")} | ${fig(r, "acked")} | ${fig(r, "stored")} | ${fig(r, "duplicates")} | ${fig(r, "missing")} | ${fig(r, "retried")} |`),
].join("\n");

const refusals = rows.filter((r) => r.suite === "access" && fig(r, "reason") !== undefined);
const reasons = [...new Set(refusals.map((r) => `${fig(r, "reason")}\u0000${fig(r, "endpoint")}\u0000${fig(r, "expected")}`))];
const refusalTable = [
  "| credential | endpoint kind | expected refusal | cases | refused so | other answers |",
  "|---|---|---|---:|---:|---|",
  ...reasons.map((k) => {
    const [reason, endpoint, expected] = k.split("\u0000");
    const rs = refusals.filter((r) => fig(r, "reason") === reason && fig(r, "endpoint") === endpoint);
    const bad = rs.filter((r) => r.outcome !== "refused").map((r) => String(fig(r, "got")));
    return `| ${reason} | ${endpoint} | ${expected} | ${rs.length} | ${rs.length - bad.length} | ${[...new Set(bad)].join("; ") || "-"} |`;
  }),
].join("\n");

const table = [areaTable, "", "Kill points:", "", killTable, "", "Bad network:", "", netTable, "", "Gateway killed under load:", "", loadTable, "", "Refusals by reason:", "", refusalTable].join("\n");
const failed = rows.filter((r) => r.outcome === "failed");
const notable = (s: string) => rows.filter((r) => r.suite === s).map((r) => `- ${r.name}: ${r.outcome}; ${r.detail}`);

process.stderr.write(`\n${table}\n\n${minutes} min on ${commit}${dirty ? ` (+${dirty} changed files)` : ""}, ${loadLine}\n`);
for (const f of failed) process.stderr.write(`FAILED [${f.suite}] ${f.name}: ${f.detail}\n`);
for (const t of failedTests) process.stderr.write(`FAILED TEST ${t}\n`);
const notTried = rows.filter((r) => r.outcome === "not-tried");
for (const f of notTried) process.stderr.write(`NOT TRIED [${f.suite}] ${f.name}: ${f.detail}\n`);

if (write) {
  const md = [
    "# Reliability and security results",
    "",
    `\`bun scripts/reliability.ts${quick ? " --quick" : ""} --write\` on ${new Date().toISOString().slice(0, 16)}Z, ${quick ? "short sizes (--quick)" : "RELIABILITY_FULL=1"}, ` +
      `${minutes} min, \`bun test\` exit ${code}. Machine: ${navigator.hardwareConcurrency} CPUs, Bun ${Bun.version}, ${loadLine}.`,
    `Commit ${commit}${dirty ? ` (the working tree had uncommitted changes in ${dirty} tracked file(s))` : ""}.`,
    "",
    "Refused = bad input or access rejected with the status and error that case deserves, nothing changed.",
    "Survived = the fault happened and the system ended in a whole, correct state. Failed = neither (a bug:",
    "see below). Not tried = the fault did not land where the case meant it to (counts as no pass).",
    "",
    table,
    "",
    ...(failed.length ? ["## Failed", "", ...failed.map((f) => `- [${f.suite}] ${f.name}: ${f.detail}`), ""] : []),
    ...(failedTests.length ? ["## Tests bun reported failed", "", ...failedTests.map((t) => `- ${t}`), ""] : []),
    "## Details",
    "",
    ...suites.flatMap((s) => [`### ${AREAS[s] ?? s}`, "", ...(s === "access" ? notable(s).slice(0, 12).concat([`- ... ${count(s)} cases in all`]) : notable(s)), ""]),
  ].join("\n");
  writeFileSync(join(ROOT, "bench/reliability/RESULTS.md"), md);
  process.stderr.write("wrote bench/reliability/RESULTS.md\n");
}
rmSync(resultsDir, { recursive: true, force: true }); // the tallies are read: the summary above and RESULTS.md hold them
process.exit(code !== 0 ? code : notTried.length || failed.length ? 1 : 0);
