/**
 * The check step creates the update and queues its first event (MetadataUpdateCompleted) in one
 * transaction: a queue that refuses the event leaves no update either, not one that resumes
 * (pendingUpdate) without ever telling the gateway it began. The DB is real; the refusal is a
 * SQLite trigger on its event queue.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Target } from "../../lib/api/index.ts";
import { resolveConfig } from "../config.ts";
import { DeviceDb } from "../db.ts";
import { createUpdate } from "./check-step.ts";
import type { AppRuntime, UpdateContext } from "./context.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-check-step-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const target: Target = {
  name: "hw-2",
  entry: { length: 0, hashes: {}, custom: { version: "2", hardwareIds: ["hw"], tags: ["main"], docker_compose_apps: {} } },
};

describe("createUpdate", () => {
  test("an event queue that refuses the first event leaves no update", () => {
    const path = join(dir, "fioup.db");
    const db = new DeviceDb(path);
    const raw = new Database(path);
    raw.run("CREATE TRIGGER refuse_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'the queue refuses'); END");
    raw.close();
    const ctx: UpdateContext = {
      cfg: resolveConfig({}, { root: dir, sotaDir: dir }),
      db,
      runtime: {} as AppRuntime, // not used by createUpdate
      hooks: {},
      registry: () => {
        throw new Error("no registry");
      },
    };
    expect(() => createUpdate(ctx, target, false)).toThrow("the queue refuses");
    expect(db.pendingUpdate()).toBeUndefined();
    expect(db.lastUpdate()).toBeUndefined();
    db.close();
  });
});
