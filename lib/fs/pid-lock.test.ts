import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireLock, LockedError, processStamp } from "./pid-lock.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("acquireLock", () => {
  test("writes the holder's PID and removes the file on release", () => {
    const p = join(dir, "a.lock");
    const l = acquireLock(p);
    expect(readFileSync(p, "utf8").trim().split(" ")[0]).toBe(String(process.pid));
    l.release();
    expect(existsSync(p)).toBe(false);
  });

  test("refuses while a live process holds it", async () => {
    const p = join(dir, "b.lock");
    const child = Bun.spawn(["sleep", "30"]);
    writeFileSync(p, `${child.pid}\n`);
    try {
      expect(() => acquireLock(p)).toThrow(LockedError);
    } finally {
      child.kill();
      await child.exited;
    }
    // Now the holder is dead: the stale lock is taken over.
    const l = acquireLock(p);
    expect(readFileSync(p, "utf8").trim().split(" ")[0]).toBe(String(process.pid));
    l.release();
  });

  test("a live process holding it (start time and boot match) is respected", async () => {
    const p = join(dir, "c.lock");
    const child = Bun.spawn(["sleep", "30"]);
    const start = readFileSync(`/proc/${child.pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ")[19];
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    writeFileSync(p, `${child.pid} ${start} ${boot}\n`);
    try {
      expect(() => acquireLock(p)).toThrow(LockedError);
    } finally {
      child.kill();
      await child.exited;
    }
  });

  test("a lock from before a power cut is stale even when its PID is alive now (another boot, or a reused PID)", async () => {
    const child = Bun.spawn(["sleep", "30"]); // a live process that is not the holder
    try {
      const start = readFileSync(`/proc/${child.pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ")[19];
      const otherBoot = join(dir, "d.lock");
      writeFileSync(otherBoot, `${child.pid} ${start} 00000000-0000-0000-0000-000000000000\n`);
      acquireLock(otherBoot).release();
      const reused = join(dir, "e.lock");
      const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
      writeFileSync(reused, `${child.pid} 1 ${boot}\n`);
      acquireLock(reused).release();
    } finally {
      child.kill();
      await child.exited;
    }
  });
});

test("a lock taken for a place holds only there: the same file copied elsewhere is stale", () => {
  const d = mkdtempSync(join(tmpdir(), "pid-lock-place-"));
  try {
    const p = join(d, "serve.lock");
    const held = acquireLock(p, process.pid, "1:100");
    expect(readFileSync(p, "utf8").trim().split(" ")[3]).toBe("1:100");
    const live = Bun.spawn(["sleep", "30"]);
    try {
      // Another live process asking for the same place is refused...
      expect(() => acquireLock(p, live.pid, "1:100")).toThrow(LockedError);
      // ...but where the file is a copy (another directory), the lock is not held.
      const copy = acquireLock(p, live.pid, "1:200");
      expect(readFileSync(p, "utf8").trim().split(" ")[0]).toBe(String(live.pid));
      copy.release();
    } finally {
      live.kill();
    }
    held.release();
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test("processStamp names a live process the same way each time, another process otherwise, a dead one not at all", async () => {
  const self = processStamp(process.pid);
  expect(self).toMatch(/^[0-9a-f-]{36}:[0-9]+$/);
  expect(processStamp(process.pid)).toBe(self);
  const child = Bun.spawn(["sleep", "30"]);
  try {
    const other = processStamp(child.pid);
    expect(other).toBeDefined();
    expect(other).not.toBe(self);
  } finally {
    child.kill();
    await child.exited;
  }
  expect(processStamp(child.pid)).toBeUndefined();
});

test("processes racing for a lock, stale again and again, never hold it two at once", async () => {
  // Two workers, as the daemon's cycle and a manual `fioup update`. Each takes the lock, says so,
  // holds it a moment, says it let go, then releases it or (one time in three) leaves it stale,
  // as a process killed while holding it does. Before the lock file was written whole and stale
  // ones were removed only when still the one judged stale, both held it at once in every run (a
  // lock read empty and taken for stale; a fresh lock unlinked by a second taker of the stale one).
  const race = join(dir, "race");
  rmSync(race, { recursive: true, force: true });
  mkdirSync(race);
  const worker = join(race, "worker.ts");
  writeFileSync(
    worker,
    `import { acquireLock, LockedError } from ${JSON.stringify(join(import.meta.dir, "pid-lock.ts"))};
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
const [path, log, go] = process.argv.slice(2);
while (!existsSync(go)) await Bun.sleep(1);
for (let i = 0; i < 150; i++) {
  try {
    const l = acquireLock(path);
    appendFileSync(log, "+\\n");
    await Bun.sleep(1);
    appendFileSync(log, "-\\n");
    if (i % 3 === 0) writeFileSync(path, "999999 1 another-boot\\n");
    else l.release();
  } catch (e) {
    if (!(e instanceof LockedError)) throw e;
  }
  await Bun.sleep(Math.random() * 2);
}
`,
  );
  const [lock, log, go] = ["x.lock", "log", "go"].map((f) => join(race, f)) as [string, string, string];
  writeFileSync(log, "");
  const workers = Array.from({ length: 2 }, () => Bun.spawn([process.execPath, worker, lock, log, go], { stderr: "pipe" }));
  await Bun.sleep(300);
  writeFileSync(go, "");
  const codes = await Promise.all(workers.map((w) => w.exited));
  expect(codes).toEqual([0, 0]);
  let holders = 0;
  let most = 0;
  let taken = 0;
  for (const line of readFileSync(log, "utf8").split("\n").filter(Boolean)) {
    holders += line === "+" ? 1 : -1;
    if (line === "+") taken++;
    most = Math.max(most, holders);
  }
  expect(taken).toBeGreaterThan(50);
  expect(most).toBe(1);
}, 60_000);
