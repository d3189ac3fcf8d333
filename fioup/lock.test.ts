import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireLock, LockedError } from "./lock.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("acquireLock", () => {
  test("writes the holder's PID and removes the file on release", () => {
    const p = join(dir, "a.lock");
    const l = acquireLock(p);
    expect(readFileSync(p, "utf8").trim()).toBe(String(process.pid));
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
    expect(readFileSync(p, "utf8").trim()).toBe(String(process.pid));
    l.release();
  });
});
