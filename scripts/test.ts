// `npm test`: runs the whole suite with bun's test runner, then prints how long each test file
// took and the total, slowest first, so a CI log shows where the minutes go.
// (`npm test` runs scripts/setup.sh first, as its pretest step, so the real components exist.)
//   bun scripts/test.ts [bun test args...]   e.g. bun scripts/test.ts test/gateway
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "ota-test-report-"));
const report = join(dir, "junit.xml");
const started = performance.now();
const loadAtStart = loadavg();
const proc = Bun.spawn(
  [process.execPath, "test", "--timeout", "120000", "--reporter=junit", `--reporter-outfile=${report}`, ...process.argv.slice(2)],
  { stdio: ["inherit", "inherit", "inherit"] },
);
const code = await proc.exited;
const wall = (performance.now() - started) / 1000;

try {
  printTimes(readFileSync(report, "utf8"), wall);
} catch (err) {
  console.error(`test times: no report (${(err as Error).message})`);
}
// Wall times mean little on a machine busy with other work: the CPU the run used and the load beside it tell.
const cpu = proc.resourceUsage()?.cpuTime;
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
if (cpu) console.error(`cpu: ${(Number(cpu.user) / 1e6).toFixed(1)} s user, ${(Number(cpu.system) / 1e6).toFixed(1)} s system (bun test and the processes it waited for)`);
console.error(`load average: ${load(loadAtStart)} at the start, ${load(loadavg())} at the end`);
rmSync(dir, { recursive: true, force: true });
process.exit(code);

/** The file-level <testsuite> elements carry the file's whole time, hooks included. */
function printTimes(xml: string, wallSeconds: number): void {
  const files: { file: string; seconds: number; tests: number; failures: number }[] = [];
  const re = /^ {2}<testsuite name="[^"]*" file="([^"]+)" tests="(\d+)" assertions="\d+" failures="(\d+)"[^>]* time="([\d.]+)"/gm;
  for (const m of xml.matchAll(re)) files.push({ file: m[1]!, tests: +m[2]!, failures: +m[3]!, seconds: +m[4]! });
  files.sort((a, b) => b.seconds - a.seconds);
  const lines = files.map((f) => `${f.seconds.toFixed(1).padStart(8)} s  ${String(f.tests).padStart(4)} tests${f.failures ? `  ${f.failures} FAILED` : ""}  ${f.file}`);
  console.error(`\ntest times per file (slowest first):\n${lines.join("\n")}`);
  const sum = files.reduce((s, f) => s + f.seconds, 0);
  console.error(`total: ${files.length} files, ${sum.toFixed(1)} s in tests, ${wallSeconds.toFixed(1)} s wall`);
}
