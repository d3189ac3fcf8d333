// `npm test`: runs the whole suite with bun's test runner, then prints how long each test file
// took and the total, slowest first, so a CI log shows where the minutes go.
// (`npm test` runs scripts/setup.sh first, as its pretest step, so the real components exist.)
//   bun scripts/test.ts [bun test args...]   e.g. bun scripts/test.ts test/gateway
//   TEST_WORKERS=1 bun scripts/test.ts       the files one after the other, in one process
//
// Given no files or directories, it runs every test file but the long ones scripts/long-tests.ts
// lists (`npm run reliability` runs those), naming each file to bun test; given some, it passes
// them on as they are, long ones included.
//
// Two worker processes run the files by default (`bun test --parallel=2`): the suite waits on
// dockerd, PostgreSQL, timeouts and child processes far more than it computes (one process used
// 36% of the two cores), so two workers take about 14 minutes where one took 19-20. Workers keep
// one module registry across their files (`--no-isolate`), as a single `bun test` process does:
// the harness holds one shared dockerd and one watchdog per test process (test/harness/), and
// re-evaluating it per file would start a watchdog per file and forget the earlier files' dirs.
// Files two workers run at once share the machine's dockerd, so each names its images, containers
// and compose projects uniquely (with the process ID), as test/harness/README.md asks.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { DOCKERD_HISTORY } from "../test/harness/dockerd.ts";
import { LONG_TESTS } from "./long-tests.ts";

const dir = mkdtempSync(join(tmpdir(), "ota-test-report-"));
const report = join(dir, "junit.xml");
const started = performance.now();
const startedAt = new Date().toISOString();
const loadAtStart = loadavg();
const args = process.argv.slice(2);
const ROOT = resolve(import.meta.dir, "..");
// A value-taking flag's value (-t NAME) is not a file: only arguments that name a path count.
const namesFiles = args.some((a) => !a.startsWith("-") && existsSync(resolve(a)));
const files = namesFiles ? [] : shortSuite();
if (!namesFiles) process.chdir(ROOT); // the files are named from the root
const workers = testWorkers(process.env.TEST_WORKERS);
const parallel = workers > 1 && !args.some((a) => a === "--parallel" || a.startsWith("--parallel=")) ? [`--parallel=${workers}`, "--no-isolate"] : [];
const proc = Bun.spawn(
  [process.execPath, "test", "--timeout", "120000", ...parallel, "--reporter=junit", `--reporter-outfile=${report}`, ...args, ...files],
  { stdio: ["inherit", "inherit", "inherit"] },
);
const code = await proc.exited;
const wall = (performance.now() - started) / 1000;

let xml = "";
try {
  xml = readFileSync(report, "utf8");
  printTimes(xml, wall, parallel.length ? workers : 1);
} catch (err) {
  console.error(`test times: no report (${(err as Error).message})`);
}
// Wall times mean little on a machine busy with other work: the CPU the run used and the load beside it tell.
const cpu = proc.resourceUsage()?.cpuTime;
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
if (cpu) console.error(`cpu: ${(Number(cpu.user) / 1e6).toFixed(1)} s user, ${(Number(cpu.system) / 1e6).toFixed(1)} s system (bun test and the processes it waited for)`);
console.error(`load average: ${load(loadAtStart)} at the start, ${load(loadavg())} at the end`);
// Last, so that a CI log's tail holds them: why each test failed, and what the shared dockerd went through.
if (xml) printFailures(xml);
if (code !== 0) printDockerdHistory(startedAt);
rmSync(dir, { recursive: true, force: true });
process.exit(code);

/**
 * Every test file bun test would find in the repository, less LONG_TESTS, as `./path` (a path, not
 * a name filter that could match another file too). Exits 2 if the list names a file that is gone.
 */
function shortSuite(): string[] {
  const gone = LONG_TESTS.filter((f) => !existsSync(join(ROOT, f)));
  if (gone.length) {
    console.error(`scripts/long-tests.ts names test files that do not exist: ${gone.join(", ")}`);
    process.exit(2);
  }
  const long = new Set(LONG_TESTS);
  const glob = new Bun.Glob("**/*.test.ts");
  const out: string[] = [];
  for (const top of readdirSync(ROOT, { withFileTypes: true })) {
    if (!top.isDirectory() || top.name.startsWith(".") || top.name === "node_modules" || top.name === "dist") continue;
    for (const f of glob.scanSync({ cwd: join(ROOT, top.name) })) {
      const path = `${top.name}/${f}`;
      if (!path.split("/").includes("node_modules") && !long.has(path)) out.push(`./${path}`);
    }
  }
  return out.sort();
}

/** TEST_WORKERS: how many worker processes run the files (default 2). */
function testWorkers(value: string | undefined): number {
  if (value === undefined || value === "") return 2;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    console.error(`TEST_WORKERS: expected a whole number from 1 to 64, got "${value}"`);
    process.exit(2);
  }
  return n;
}

/** The file-level <testsuite> elements carry the file's whole time, hooks included. */
function printTimes(xml: string, wallSeconds: number, workers: number): void {
  const files: { file: string; seconds: number; tests: number; failures: number }[] = [];
  const re = /^ {2}<testsuite name="[^"]*" file="([^"]+)" tests="(\d+)" assertions="\d+" failures="(\d+)"[^>]* time="([\d.]+)"/gm;
  for (const m of xml.matchAll(re)) files.push({ file: m[1]!, tests: +m[2]!, failures: +m[3]!, seconds: +m[4]! });
  files.sort((a, b) => b.seconds - a.seconds);
  const lines = files.map((f) => `${f.seconds.toFixed(1).padStart(8)} s  ${String(f.tests).padStart(4)} tests${f.failures ? `  ${f.failures} FAILED` : ""}  ${f.file}`);
  console.error(`\ntest times per file (slowest first):\n${lines.join("\n")}`);
  const sum = files.reduce((s, f) => s + f.seconds, 0);
  const summed = workers > 1 ? ` (summed over ${workers} workers)` : "";
  console.error(`total: ${files.length} files, ${sum.toFixed(1)} s in tests${summed}, ${wallSeconds.toFixed(1)} s wall`);
}

function unescapeXml(s: string): string {
  return s.replace(/&#10;/g, "\n").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** Each failed test with the first lines of its error (bun's own output has them too, far up a long log). */
function printFailures(xml: string): void {
  const re = /<testcase name="([^"]*)"[^>]* file="([^"]+)"[^>]*>\s*<failure [^>]*>([^<]*)<\/failure>/g;
  const out: string[] = [];
  for (const m of xml.matchAll(re)) {
    if (out.length === 30) {
      out.push("  (more failures: see the output above)");
      break;
    }
    const lines = unescapeXml(m[3]!).split("\n").filter((l) => l.trim()).slice(0, 8);
    out.push(`  ${m[2]} > ${unescapeXml(m[1]!)}\n${lines.map((l) => `      ${l.slice(0, 300)}`).join("\n")}`);
  }
  if (out.length) console.error(`\nfailures (first lines of each error):\n${out.join("\n")}`);
}

/** The shared test dockerd's starts and stops during this run (test/harness/dockerd.ts writes them). */
function printDockerdHistory(since: string): void {
  if (!existsSync(DOCKERD_HISTORY)) return;
  const lines = readFileSync(DOCKERD_HISTORY, "utf8").split("\n").filter((l) => l && l >= since);
  const churn = lines.filter((l) => !l.includes("empties dockerd"));
  if (churn.length) console.error(`\nthe shared test dockerd during this run:\n${churn.slice(-30).map((l) => `  ${l}`).join("\n")}`);
}
