import { Database } from "bun:sqlite";
import { beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import { SqliteStore } from "./sqlite.ts";
import { WriterThread } from "./_writer-thread.ts";

// The watchdog's rule, on the thread itself: a call is hung when it goes the bound without an
// answer, counted from when it was sent or from the previous answer, whichever is later.
const BOUND_MS = 1500;
let path: string;

beforeAll(async () => {
  path = join(await tempDir("writer-thread-"), "gateway.db");
  SqliteStore.open(path).close(); // the schema
});

/** A sightings flush of nobody: a write that needs the lock and changes nothing. */
const write = (t: WriterThread, slowMs?: number) =>
  t.call({ op: "run", sql: "sighting", rows: [[new Date().toISOString(), null, null, null, "nobody"]], ...(slowMs ? { slowMs } : {}) }, "test write");

test("calls queued together and answered one by one, each within the bound, are progress, though the last waits far longer than the bound in all", async () => {
  const deaths: string[] = [];
  const t = new WriterThread(path, (r) => deaths.push(r), BOUND_MS);
  try {
    await write(t); // the thread is up
    // Five calls sent at once, each taking a second on the thread (a slow disk): answered over five seconds.
    const sent = performance.now();
    await Promise.all(Array.from({ length: 5 }, () => write(t, 1000)));
    expect(performance.now() - sent).toBeGreaterThan(BOUND_MS * 2);
    expect(deaths).toEqual([]);
  } finally {
    await t.stop();
  }
}, 30_000);

test("after an idle gap longer than the bound, a call that waits a moment is not taken for a hang", async () => {
  const deaths: string[] = [];
  const t = new WriterThread(path, (r) => deaths.push(r), BOUND_MS);
  const other = new Database(path);
  other.exec("PRAGMA busy_timeout = 5000");
  try {
    await write(t);
    await Bun.sleep(BOUND_MS + 500); // nothing asked: the last answer is older than the bound
    other.exec("BEGIN IMMEDIATE");
    const call = write(t);
    await Bun.sleep(700); // the call waits for the lock, past a watchdog tick or two
    other.exec("COMMIT");
    await call;
    expect(deaths).toEqual([]);
  } finally {
    other.close();
    await t.stop();
  }
}, 30_000);

test("a call that goes the bound without an answer ends the thread as hung", async () => {
  const deaths: string[] = [];
  const t = new WriterThread(path, (r) => deaths.push(r), BOUND_MS);
  try {
    await write(t);
    const err = await write(t, BOUND_MS + 2000).catch((e: unknown) => e);
    expect(String(err)).toContain("(hung) and was terminated");
    expect(deaths).toHaveLength(1);
  } finally {
    await t.stop();
  }
}, 30_000);

test("a process that has nothing but a call to the writer thread to wait for sleeps while it waits (its main thread does not spin)", async () => {
  // A script of its own: the test runner's handles would keep the event loop asleep anyway.
  const script = `
    import { WriterThread } from ${JSON.stringify(join(import.meta.dir, "_writer-thread.ts"))};
    const t = new WriterThread(${JSON.stringify(path)}, () => {});
    const write = (slowMs) => t.call({ op: "run", sql: "sighting", rows: [[new Date().toISOString(), null, null, null, "nobody"]], slowMs }, "test write");
    await write(0);
    const before = process.threadCpuUsage();
    await write(600);
    const used = process.threadCpuUsage(before);
    await t.stop();
    console.log(JSON.stringify({ ms: (used.user + used.system) / 1000 }));
  `;
  const file = join(await tempDir("writer-thread-spin-"), "wait.ts");
  await Bun.write(file, script);
  const proc = Bun.spawn([process.execPath, file], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(proc.stdout).text();
  expect(await proc.exited).toBe(0);
  const { ms } = JSON.parse(out) as { ms: number };
  // Spinning, the main thread burns most of the 600 ms the write takes; asleep, a few ms.
  expect(ms).toBeLessThan(150);
}, 30_000);
