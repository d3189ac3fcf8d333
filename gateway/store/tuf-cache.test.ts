import { afterEach, beforeEach, expect, setSystemTime, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { MemoryTufStorage } from "../ota/memory-storage.ts";
import { TufRepo } from "../ota/repo.ts";
import type { View } from "../ota/views.ts";
import { CachedTufStorage } from "./tuf-cache.ts";

// A poll of timestamp.json through the cache is answered without a promise; what it answers must
// be what the storage's promises give: the latest timestamp, the device's view of it, and a new
// version at once after a write.

const entry = (version: number): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: ["rpi"], tags: ["main"], docker_compose_apps: {} },
});
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const hide2: View = { key: "r1:hide-2", hideVersions: ["2"], annotate: {} };

let dir: string;
let inner: MemoryTufStorage;
let repo: TufRepo;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tuf-cache-"));
  inner = new MemoryTufStorage();
  repo = await TufRepo.open({ storage: new CachedTufStorage(inner, 60_000), keysDir: join(dir, "keys") });
  await repo.addTargets({ "rpi-1": entry(1), "rpi-2": entry(2) });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("timestamp.json, once cached, is answered at once: the stored latest version, or the device's view of it", async () => {
  const first = await repo.metadata("timestamp.json"); // read through, now cached
  const hit = repo.metadata("timestamp.json");
  expect(hit).toBeInstanceOf(Uint8Array);
  expect(text(hit as Uint8Array)).toBe((await inner.getLatest("timestamp"))!.json);
  expect(text(hit as Uint8Array)).toBe(text(first));

  // A view: the same bytes whether answered at once or through the promises (an uncached repo on the same storage).
  const uncached = await TufRepo.open({ storage: inner, keysDir: join(dir, "keys") });
  const viewed = await repo.metadata("timestamp.json", () => hide2);
  const viewedAgain = repo.metadata("timestamp.json", () => hide2);
  expect(viewedAgain).toBeInstanceOf(Uint8Array);
  expect(text(viewedAgain as Uint8Array)).toBe(text(await uncached.metadata("timestamp.json", () => hide2)));
  expect(text(viewedAgain as Uint8Array)).toBe(text(viewed));
  expect(text(viewed)).not.toBe(text(first)); // the view is signed apart: it pins a targets.json without version 2

  // A view still being looked up (the rollout state reloading) is waited for.
  const later = repo.metadata("timestamp.json", () => Promise.resolve(hide2));
  expect(later).toBeInstanceOf(Promise);
  expect(text(await later)).toBe(text(viewed));
});

test("after a write the next poll answers the new timestamp version, not the cached one", async () => {
  const before = JSON.parse(text((await repo.metadata("timestamp.json"))!)).signed.version as number;
  await repo.addTargets({ "rpi-3": entry(3) });
  const after = await repo.metadata("timestamp.json");
  expect(JSON.parse(text(after)).signed.version).toBe(before + 1);
  expect(text(after)).toBe((await inner.getLatest("timestamp"))!.json);
  // And the view a device gets is made from that new version.
  let asked = 0;
  await repo.metadata("timestamp.json", (v) => ((asked = v), hide2));
  expect(asked).toBe(before + 1);
});

test("another replica's write shows within the TTL however this replica's wall clock steps", async () => {
  const mine = await TufRepo.open({ storage: new CachedTufStorage(inner, 300), keysDir: join(dir, "keys") });
  const other = await TufRepo.open({ storage: inner, keysDir: join(dir, "keys") });
  const version = async () => JSON.parse(text((await mine.metadata("timestamp.json"))!)).signed.version as number;
  const before = await version(); // cached now
  try {
    setSystemTime(new Date(Date.now() - 3_600_000)); // NTP steps this replica's clock back an hour
    await other.addTargets({ "rpi-3": entry(3) });
    await Bun.sleep(350);
    expect(await version()).toBe(before + 1);
    setSystemTime(new Date(Date.now() + 7_200_000)); // and forward an hour past the real time: what was just read is still served from the cache
    await other.addTargets({ "rpi-4": entry(4) });
    expect(await version()).toBe(before + 1);
  } finally {
    setSystemTime();
  }
});
