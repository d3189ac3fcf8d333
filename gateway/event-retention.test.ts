import { expect, test } from "bun:test";
import { CHUNK, EventRetention } from "./event-retention.ts";
import type { Store } from "./store/types.ts";

test("a run goes on past a chunk that removed fewer than CHUNK, until one removes none", async () => {
  // As a store answers when events kept for now (stamped later than their neighbours) sit among old ones.
  const answers = [CHUNK - 1, 1, CHUNK, 0, 7];
  const calls: number[] = [];
  const store = { pruneEvents: async (_before: string, limit: number) => (calls.push(limit), answers.shift()!) } as unknown as Store;
  const logs: string[] = [];
  const r = new EventRetention({ store, keepMs: 1000, shown: "1s", isLeader: () => true, log: (l) => logs.push(l), pauseMs: 0 });
  expect(await r.runNow()).toBe(2 * CHUNK);
  expect(calls).toEqual([CHUNK, CHUNK, CHUNK, CHUNK]);
  expect(logs.length).toBe(1);
  expect(logs[0]).toStartWith(`gateway: removed ${2 * CHUNK} events received before `);
  await r.stop();
});
