/** What `fioup update` prints while fetching when stderr is not a terminal (logs, systemd). */
import { expect, test } from "bun:test";
import { progressHooks } from "./progress.ts";

test("without a terminal each blob is printed once, when committed, not on its last progress tick too", () => {
  const lines: string[] = [];
  const h = progressHooks((s) => lines.push(s), false);
  const blobs = [
    { digest: "sha256:" + "a".repeat(64), total: 1000 },
    { digest: "sha256:" + "b".repeat(64), total: 10 },
  ];
  const fetchTotal = 1010;
  for (const [i, b] of blobs.entries()) {
    for (const done of [b.total / 2, b.total]) h.onBlobProgress!({ digest: b.digest, done, total: b.total, index: i + 1, count: 2, committed: false, fetchTotal });
    h.onBlobProgress!({ digest: b.digest, done: b.total, total: b.total, index: i + 1, count: 2, committed: true, fetchTotal });
  }
  expect(lines).toEqual([`[1/2] fetched ${blobs[0]!.digest} 1000 B\n`, `[2/2] fetched ${blobs[1]!.digest} 10 B\n`]);
});

test("a layer rebuilt from a delta says so, with the delta's size, not 'fetched' and the layer's", () => {
  const lines: string[] = [];
  const h = progressHooks((s) => lines.push(s), false);
  const digest = "sha256:" + "d".repeat(64);
  h.onBlobProgress!({ digest, done: 9_694_754, total: 9_694_754, index: 1, count: 1, committed: true, fetchTotal: 9_694_754, deltaBytes: 1_052_614 });
  expect(lines).toEqual([`[1/1] rebuilt ${digest} 9.2 MiB (9694754 bytes) from a delta of 1.0 MiB (1052614 bytes)\n`]);
});

test("on a terminal the bar is redrawn in place and ends with one newline", () => {
  const out: string[] = [];
  const h = progressHooks((s) => out.push(s), true);
  const d = "sha256:" + "c".repeat(64);
  h.onBlobProgress!({ digest: d, done: 5, total: 5, index: 1, count: 1, committed: true, fetchTotal: 5 });
  const text = out.join("");
  expect(text).toStartWith("\r[1/1 blobs]");
  expect(text).toContain("100%");
  expect(text.match(/\n/g)).toHaveLength(1);
});

test("on a terminal a line written while the bar is drawn (a refused delta, Ctrl-C's error) starts on its own line", async () => {
  const out: string[] = [];
  const h = progressHooks((s) => out.push(s), true);
  const [a, b] = ["d", "e"].map((c) => "sha256:" + c.repeat(64));
  h.onBlobProgress!({ digest: a!, done: 5, total: 5, index: 1, count: 2, committed: true, fetchTotal: 10 });
  h.onInfo!(`Layer ${b}: no delta; fetching it whole`);
  expect(out.slice(-2)).toEqual(["\n", `Layer ${b}: no delta; fetching it whole\n`]);
  await Bun.sleep(150); // the bar is redrawn at most every 100 ms
  h.onBlobProgress!({ digest: b!, done: 2, total: 5, index: 2, count: 2, committed: false, fetchTotal: 10 });
  h.endLine(); // the command is about to print an error
  h.endLine(); // only once
  const lines = out.join("").split("\n");
  expect(lines[1]).toBe(`Layer ${b}: no delta; fetching it whole`);
  expect(lines[2]).toStartWith("\r[1/2 blobs]");
  expect(lines).toHaveLength(4); // bar, info, bar, and the empty rest after the last newline
  expect(lines[3]).toBe("");
});

test("the step clock starts again with each update, not from when the daemon started", async () => {
  const out: string[] = [];
  const h = progressHooks((s) => out.push(s), false);
  const update = (id: string) => ({ id, toTarget: `t-${id}`, state: "created" }) as Parameters<NonNullable<typeof h.onStep>>[1];
  await Bun.sleep(300); // the daemon has run a while before its first update
  h.onStep!("init", update("a"));
  await Bun.sleep(1100);
  h.onStep!("fetch", update("a"));
  h.onStep!("init", update("b"));
  expect(out).toEqual([
    "[0.0s] init t-a (update a, created)\n",
    expect.stringMatching(/^\[[1-9]\d*\.\ds\] fetch t-a \(update a, created\)\n$/),
    "[0.0s] init t-b (update b, created)\n",
  ]);
});
