import { describe, expect, test } from "bun:test";
import { progressLine } from "./progress.ts";

/** A progress line writing into `out`, on a clock the test moves. */
function line(tty: boolean) {
  let t = 1_000_000;
  const out: string[] = [];
  const p = progressLine((l) => out.push(`${l}\n`), { tty, write: (s) => out.push(s), now: () => t });
  return { p, out, tick: (ms: number) => (t += ms) };
}

describe("progressLine", () => {
  test("on a terminal: rewritten in place at most 4 times a second, cleared before a line that stays", () => {
    const { p, out, tick } = line(true);
    p.show("1 MiB");
    tick(100);
    p.show("2 MiB"); // too soon: dropped
    tick(200);
    p.show("3 MiB");
    p.print("blob done");
    p.clear(); // nothing shown since: writes nothing
    expect(out).toEqual(["\r\x1b[K1 MiB", "\r\x1b[K3 MiB", "\r\x1b[K", "blob done\n"]);
  });

  test("in a log: quiet for the first 10 s, then a plain line every 10 s, never an escape", () => {
    const { p, out, tick } = line(false);
    p.show("1 MiB");
    tick(9_000);
    p.show("2 MiB");
    tick(1_000);
    p.show("3 MiB");
    tick(5_000);
    p.show("4 MiB");
    tick(5_000);
    p.show("5 MiB");
    p.print("blob done");
    p.clear();
    expect(out).toEqual(["3 MiB\n", "5 MiB\n", "blob done\n"]);
  });
});
