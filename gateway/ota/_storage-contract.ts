/**
 * The {@link TufStorage} contract as a test suite: call it from each
 * backend's test file (`describe("SqliteTufStorage", () => tufStorageContract(open))`).
 *
 * @module
 */
import { expect, test } from "bun:test";
import type { TufRecord, TufStorage } from "./storage.ts";
import { TufVersionConflictError } from "./storage.ts";

const rec = (role: TufRecord["role"], version: number, json = `{"v":${version},"s":"é\\n"}`): TufRecord => ({
  role,
  version,
  json,
  expires: "2030-01-01T00:00:00Z",
});

export function tufStorageContract(open: () => Promise<TufStorage>): void {
  test("getLatest() and get() return undefined on an empty store", async () => {
    const s = await open();
    expect(await s.getLatest("root")).toBeUndefined();
    expect(await s.get("targets", 1)).toBeUndefined();
  });

  test("put() stores records byte for byte and getLatest() returns the highest version", async () => {
    const s = await open();
    const text = JSON.stringify({ signed: { a: "ünïcode", n: 1 }, signatures: [] });
    await s.put([rec("root", 1, text), rec("targets", 1)]);
    await s.put([rec("root", 2), rec("targets", 2)]);
    expect((await s.get("root", 1))?.json).toBe(text);
    expect(await s.getLatest("root")).toEqual(rec("root", 2));
    expect((await s.getLatest("targets"))?.version).toBe(2);
    expect(await s.getLatest("snapshot")).toBeUndefined();
  });

  test("put() with an existing (role, version) throws TufVersionConflictError and writes nothing", async () => {
    const s = await open();
    await s.put([rec("timestamp", 1)]);
    await expect(s.put([rec("snapshot", 1), rec("timestamp", 1, "{}")])).rejects.toThrow(TufVersionConflictError);
    expect(await s.getLatest("snapshot")).toBeUndefined();
    expect((await s.get("timestamp", 1))?.json).toBe(rec("timestamp", 1).json);
  });

  test("concurrent put() of the same version: exactly one wins", async () => {
    const s = await open();
    const results = await Promise.allSettled([s.put([rec("snapshot", 7, "{\"a\":1}")]), s.put([rec("snapshot", 7, "{\"b\":2}")])]);
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(failed.reason).toBeInstanceOf(TufVersionConflictError);
  });

  test("deleteBefore(), when implemented, drops only older versions of that role", async () => {
    const s = await open();
    if (!s.deleteBefore) return;
    await s.put([rec("targets", 1), rec("targets", 2), rec("targets", 3), rec("snapshot", 1)]);
    expect(await s.deleteBefore("targets", 3)).toBe(2);
    expect(await s.get("targets", 2)).toBeUndefined();
    expect((await s.getLatest("targets"))?.version).toBe(3);
    expect(await s.get("snapshot", 1)).toBeDefined();
  });
}
