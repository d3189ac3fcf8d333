/**
 * The refusals a device's owner reads most after an expiry, from the errors tuf-js really throws:
 * a metadata file cut short (a bundle copied in part) and a copy older than the one the device
 * verified (a bundle exported before its last update). Each names the file and says what to do.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryTufStorage, TufRepo } from "../../gateway/ota/index.ts";
import { serveRepo, targetEntry, type RepoServer } from "./_repo-server.ts";
import { classifyTufError, ExpiredMetadataError, InvalidMetadataError, RollbackError } from "../../lib/tuf/verification-errors.ts";
import { verifyAndLoadTargets } from "../../lib/tuf/verify-targets.ts";

let work: string;
let repo: TufRepo;
let server: RepoServer;
let devices = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "tuf-errors-"));
  repo = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir: join(work, "keys") });
  server = serveRepo(() => repo);
});

afterAll(async () => {
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

async function newDevice(): Promise<string> {
  const dir = join(work, `device-${++devices}`);
  await mkdir(dir);
  await writeFile(join(dir, "root.json"), (await repo.metadata("1.root.json"))!);
  return dir;
}

const verify = (dir: string) => verifyAndLoadTargets({ metadataDir: dir, metadataBaseUrl: server.baseUrl });

describe("classifyTufError", () => {
  test("an expired timestamp found while snapshot.json loads is named timestamp.json, with its expiry against the clock", () => {
    // What tuf-js throws when the timestamp's final expiry check fails inside the snapshot's load.
    const err = new Error("Unable to load snapshot metadata error Error: Final timestamp.json is expired");
    const now = new Date("2026-12-08T19:18:48Z");
    const e = classifyTufError(err, undefined, { now, expiresOf: (f) => (f === "timestamp.json" ? "2026-12-07T19:00:00Z" : undefined) });
    expect(e).toBeInstanceOf(ExpiredMetadataError);
    expect(e.message).toStartWith("Cannot verify TUF metadata timestamp.json: expired at 2026-12-07T19:00:00Z by this machine's clock, which reads 2026-12-08T19:18:48Z");
    // A wrapped message that names no file keeps the file being loaded.
    expect(classifyTufError(new Error("Unable to load targets metadata error Error: bad"), undefined).message).toStartWith("Cannot verify TUF metadata targets.json");
  });

  test("a timestamp.json cut short is named, with what to do", async () => {
    const whole = (await repo.metadata("timestamp.json"))!;
    server.overrides.set("timestamp.json", whole.slice(0, whole.length >> 1));
    try {
      const err = await verify(await newDevice()).catch((e) => e);
      expect(err).toBeInstanceOf(InvalidMetadataError);
      expect(err.file).toBe("timestamp.json");
      expect(err.message).toMatch(/^Cannot verify TUF metadata timestamp\.json: not valid JSON \(JSON Parse error: [^)]+\): the copy is damaged or cut short: copy the bundle again, or export a new one \(gateway export\)/);
    } finally {
      server.overrides.clear();
    }
  });

  test("a timestamp.json older than the one verified says to use a newer bundle", async () => {
    const dir = await newDevice();
    await verify(dir);
    const old = (await repo.metadata("timestamp.json"))!;
    await repo.addTargets({ "rpi-9": targetEntry(9) });
    await verify(dir);
    server.overrides.set("timestamp.json", old);
    try {
      const err = await verify(dir).catch((e) => e);
      expect(err).toBeInstanceOf(RollbackError);
      expect(err.message).toMatch(
        /^Cannot verify TUF metadata timestamp\.json: older than the trusted version \(New timestamp version \d+ is less than current version \d+\): .*apply a bundle exported since \(gateway export\)/,
      );
    } finally {
      server.overrides.clear();
    }
  });
});
