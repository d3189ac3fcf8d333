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

test("on a terminal the bar is redrawn in place, and the finished bar stays on its own line", () => {
  const out: string[] = [];
  const h = progressHooks((s) => out.push(s), true);
  const [a, b] = ["c", "f"].map((c) => "sha256:" + c.repeat(64));
  h.onBlobProgress!({ digest: a!, done: 2, total: 5, index: 1, count: 2, committed: false, fetchTotal: 10 });
  h.onBlobProgress!({ digest: a!, done: 5, total: 5, index: 1, count: 2, committed: true, fetchTotal: 10 });
  h.onBlobProgress!({ digest: b!, done: 5, total: 5, index: 2, count: 2, committed: true, fetchTotal: 10 });
  const text = out.join("");
  expect(text).toStartWith("\r\x1b[K[0/2 blobs]");
  expect(text).toEndWith("\r\x1b[K[2/2 blobs] [" + "#".repeat(30) + "] 100% 10 B of 10 B\n");
  expect(text.match(/\n/g)).toHaveLength(1);
});

test("on a terminal a line written while the bar is drawn (a refused delta, Ctrl-C's error) starts on a cleared line", async () => {
  const out: string[] = [];
  const h = progressHooks((s) => out.push(s), true);
  const [a, b] = ["d", "e"].map((c) => "sha256:" + c.repeat(64));
  h.onBlobProgress!({ digest: a!, done: 5, total: 5, index: 1, count: 2, committed: true, fetchTotal: 10 });
  h.onInfo!(`Layer ${b}: no delta; fetching it whole`);
  expect(out.slice(-2)).toEqual(["\r\x1b[K", `Layer ${b}: no delta; fetching it whole\n`]);
  await Bun.sleep(300); // the bar is redrawn at most every 250 ms
  h.onBlobProgress!({ digest: b!, done: 2, total: 5, index: 2, count: 2, committed: false, fetchTotal: 10 });
  expect(out.at(-1)).toStartWith("\r\x1b[K[1/2 blobs]");
  h.endLine(); // the command is about to print an error
  h.endLine(); // only once
  expect(out.slice(-2)).toEqual([expect.stringMatching(/^\r\x1b\[K\[1\/2 blobs\]/), "\r\x1b[K"]);
});

test("without a terminal a large blob still on its way is said every 10 s, not only when committed", () => {
  const lines: string[] = [];
  let now = 0;
  const realNow = performance.now;
  performance.now = () => now;
  try {
    const h = progressHooks((s) => lines.push(s), false);
    const d = "sha256:" + "9".repeat(64);
    for (let t = 0; t <= 25_000; t += 1000) {
      now = t;
      h.onBlobProgress!({ digest: d, done: t * 1000, total: 30_000_000, index: 1, count: 1, committed: false, fetchTotal: 30_000_000 });
    }
  } finally {
    performance.now = realNow;
  }
  // Quiet for the first 10 s, then one line every 10 s.
  expect(lines).toEqual(["fetching blobs: 9.5 MiB of 28.6 MiB, 0 of 1 committed\n", "fetching blobs: 19.1 MiB of 28.6 MiB, 0 of 1 committed\n"]);
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

test("a bundle of a MiB or more is said once stored (and drawn while it comes on a terminal); a small one adds no line", () => {
  const lines: string[] = [];
  const h = progressHooks((s) => lines.push(s), false);
  h.onBundleProgress!({ app: "web", done: 300, total: 300 });
  expect(lines).toEqual([]);
  h.onBundleProgress!({ app: "big", done: 1 << 20, total: 3 << 20 });
  h.onBundleProgress!({ app: "big", done: 3 << 20, total: 3 << 20 });
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^\[\d+\.\ds\] app big: bundle fetched, 3\.0 MiB \(3145728 bytes\)\n$/);
});
