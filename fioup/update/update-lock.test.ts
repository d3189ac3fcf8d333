import { afterEach, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UpdateLockBusyError } from "./update-lock.ts";

const procs: Bun.Subprocess[] = [];
afterEach(() => {
  for (const p of procs.splice(0)) p.kill();
});

/** A process whose command line is `sh -c 'sleep 30' ...rest` (sh's $0 and $1 are `rest`). */
function holder(...rest: string[]): number {
  const p = Bun.spawn(["sh", "-c", "sleep 30", ...rest], { stdout: "ignore", stderr: "ignore" });
  procs.push(p);
  return p.pid;
}

test("the refusal names the fioup command holding the lock, but not another program whose arguments contain a fioup verb", async () => {
  const path = join(mkdtempSync(join(tmpdir(), "update-lock-")), "update.lock");
  const fioup = holder("/usr/bin/fioup", "start");
  const bunFioup = holder("/work/fioup/main.ts", "daemon");
  const systemctl = holder("systemctl", "start", "x");
  await Bun.sleep(100); // their command lines are in /proc
  expect(new UpdateLockBusyError(path, fioup, "cancel").message).toStartWith(`Cannot cancel: \`fioup start\` (process ${fioup}) holds the update lock ${path}.`);
  expect(new UpdateLockBusyError(path, bunFioup, "cancel").message).toContain(`\`fioup daemon\` (process ${bunFioup})`);
  expect(new UpdateLockBusyError(path, systemctl, "cancel").message).toStartWith(`Cannot cancel: process ${systemctl} holds the update lock ${path}.`);
});
