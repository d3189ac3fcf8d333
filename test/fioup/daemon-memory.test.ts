/**
 * The running `fioup daemon` gives back its executable's idle pages after its
 * first cycle (fioup/memory.ts), seen from outside: its own /proc/PID/smaps
 * and the madvise calls it makes (strace). The daemon runs on a private copy
 * of the bun runtime, as the compiled fioup is a file of its own on a device:
 * the kernel reclaims only pages no other process maps. The device has no
 * target, so its first cycle is a failed selection (after which the daemon
 * releases as after any first cycle); no swap is needed: an advised mapping
 * holding anonymous pages shows in the trace whether or not they could move.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { removeTempDir, tempDir, until } from "../harness/tmp.ts";
import { Device, ROOT, startDockerd, startTestGateway, type DockerdHandle, type TestGateway } from "./_setup.ts";

let dockerd: DockerdHandle;
let gw: TestGateway;
let device: Device;

beforeAll(async () => {
  [dockerd, gw] = await Promise.all([startDockerd(), startTestGateway()]);
  device = await Device.create(dockerd);
  await device.register(gw);
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await dockerd?.stop();
});

interface Mapping {
  start: number;
  end: number;
  perms: string;
  /** kB */
  rss: number;
  anonymous: number;
  swap: number;
}

/** The mappings of `pid`'s executable, from its smaps. */
function exeMappings(pid: number): Mapping[] {
  const exe = readlinkSync(`/proc/${pid}/exe`);
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (m) {
      cur = m[4] === exe ? { start: Number.parseInt(m[1]!, 16), end: Number.parseInt(m[2]!, 16), perms: m[3]!, rss: 0, anonymous: 0, swap: 0 } : undefined;
      if (cur) out.push(cur);
      continue;
    }
    const f = /^(Rss|Anonymous|Swap):\s+(\d+) kB/.exec(line);
    if (cur && f) cur[f[1]!.toLowerCase() as "rss" | "anonymous" | "swap"] = Number(f[2]);
  }
  return out;
}

/** Resident kB of the executable's file pages (read-only mappings, anonymous copies left out). */
const fileRss = (ms: Mapping[]) => ms.filter((m) => !m.perms.includes("w")).reduce((kb, m) => kb + m.rss - m.anonymous, 0);

const readOr = <T>(read: () => T): T | undefined => {
  try {
    return read();
  } catch {
    return undefined; // the process is gone (its exit is reported by the caller)
  }
};

/**
 * The MADV_PAGEOUT calls strace recorded: `[start, length]`, from its files `<prefix>.<tid>`, one
 * per thread (`-ff`). In one shared file a call another thread's madvise interrupted (the GC's,
 * while a long pageout runs: likely on a loaded machine) is split into `<unfinished ...>` and
 * `<... madvise resumed>` lines, which the pattern would miss.
 */
const pageouts = (dir: string, prefix: string) =>
  readdirSync(dir)
    .filter((f) => f.startsWith(`${prefix}.`))
    .flatMap((f) => [...readFileSync(join(dir, f), "utf8").matchAll(/madvise\((0x[0-9a-f]+), (\d+), MADV_PAGEOUT\) = 0/g)])
    .map((m) => [Number(m[1]), Number(m[2])] as const);

test("after its first cycle the daemon gives back the executable's clean pages and advises no mapping holding anonymous pages", async () => {
  const dir = await tempDir("fioup-daemon-memory-");
  const bun = join(dir, "bun");
  copyFileSync(process.execPath, bun);
  const trace = join(dir, "madvise.trace"); // strace -ff: madvise.trace.<tid>, one file per thread
  // strace stops the daemon only at madvise (seccomp filter); its first traced process is the daemon.
  const p = Bun.spawn(["strace", "-f", "--seccomp-bpf", "-e", "trace=madvise", "-e", "signal=none", "-ff", "-o", trace, bun, join(ROOT, "fioup/main.ts"), "daemon"], {
    env: { ...process.env, ...device.env(), BUN_JSC_useBaselineJIT: "0" },
    stdout: "ignore",
    stderr: "pipe",
    cwd: ROOT,
  });
  /** strace's child running our copy of bun: the daemon (strace's first children can be its own probes). */
  const daemonPid = () =>
    (readOr(() => readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, "utf8")) ?? "")
      .split(" ")
      .map(Number)
      .find((pid) => pid > 0 && readOr(() => readlinkSync(`/proc/${pid}/exe`)) === bun);
  let log = "";
  const stopDaemon = async () => {
    // The daemon itself (strace, on SIGTERM, would detach and leave it running); strace ends with it.
    const pid = daemonPid();
    if (pid) readOr(() => process.kill(pid, "SIGTERM"));
    await Promise.race([p.exited, Bun.sleep(15_000)]);
    if (p.exitCode === null) {
      const left = daemonPid();
      if (left) readOr(() => process.kill(left, "SIGKILL"));
      p.kill("SIGKILL");
    }
    await Promise.race([reading.catch(() => {}), Bun.sleep(5000)]);
  };
  const reading = (async () => {
    for await (const chunk of p.stderr) log += new TextDecoder().decode(chunk);
  })();
  try {
    const deadline = Date.now() + 60_000;
    // The device has no target yet: each cycle says there is nothing to run yet. The release follows the first.
    const cycles = () => log.split("nothing to run yet: no target").length - 1;
    let pid: number | undefined;
    let before = 0;
    // Sample the executable's resident pages until the first cycle has ended.
    while (cycles() === 0) {
      if (Date.now() > deadline || p.exitCode !== null) throw new Error(`The daemon never ended its first cycle; its log:\n${log.slice(-3000)}`);
      pid ??= daemonPid();
      const ms = pid ? readOr(() => exeMappings(pid!)) : undefined;
      if (ms) before = Math.max(before, fileRss(ms));
      await Bun.sleep(25);
    }
    if (!pid || before === 0) throw new Error(`The daemon's memory was never sampled before its first cycle ended; its log:\n${log.slice(-3000)}`);
    // The release follows at once: the pages leave within moments.
    const after = await until(`the executable's resident file pages under half the ${before} kB sampled while starting`, () => exeMappings(pid!), (ms) => fileRss(ms) < before / 2, 10_000);
    const now = fileRss(after);
    console.error(`executable's resident file pages: ${before} kB while starting, ${now} kB after the first cycle`);
    expect(now).toBeLessThan(before / 2);
    // strace writes its whole record once the daemon has exited.
    await stopDaemon();
    expect(p.exitCode).toBe(0); // it ran on after the advice and stopped cleanly on SIGTERM
    const advised = pageouts(dir, "madvise.trace");
    expect(advised.length).toBeGreaterThan(0);
    // Every advised range is a whole read-only mapping of the executable with no anonymous or swapped page.
    for (const [start, length] of advised) {
      const m = after.find((x) => x.start === start);
      expect(m, `advised ${start.toString(16)} is no mapping of the executable`).toBeDefined();
      expect({ length: m!.end - m!.start, perms: m!.perms.includes("w"), anonymous: m!.anonymous, swap: m!.swap }).toEqual({ length, perms: false, anonymous: 0, swap: 0 });
    }
    // And the read-only mappings holding anonymous pages (relocated data) exist and were left alone.
    const withAnon = after.filter((m) => !m.perms.includes("w") && m.anonymous > 0);
    expect(withAnon.length).toBeGreaterThan(0);
    for (const m of withAnon) expect(advised.some(([s]) => s === m.start)).toBe(false);
  } finally {
    await stopDaemon();
    removeTempDir(dir);
  }
  expect(log).not.toContain("cannot give back");
}, 90_000);
