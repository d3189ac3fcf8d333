/**
 * A cancel whose restore is stopped half-way (Ctrl-C or SIGTERM while `fioup update` or the
 * daemon finishes it) stays `cancelling`, to be restored again by the next run, rather than
 * ending `canceled` with the old apps down. The runtime is a small stand-in; the DB is real.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Target } from "../../lib/api/index.ts";
import type { Config } from "../config.ts";
import { DeviceDb } from "../db.ts";
import { cancelUpdate } from "./cancel.ts";
import type { AppRuntime, UpdateContext } from "./context.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-cancel-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const target = (version: string, uri: string): Target => ({
  name: `hw-${version}`,
  entry: { length: 0, hashes: {}, custom: { version, hardwareIds: ["hw"], tags: ["main"], docker_compose_apps: { web: { uri } } } },
});

/** What the restore needs of the runtime: the new `web` swapped in and stopped, the old one to install again from the store. */
function runtime(installed: Map<string, string>, signal?: AbortSignal): AppRuntime {
  const rt: Partial<AppRuntime> = {
    installedApps: async () => [...installed].map(([name, uri]) => ({ name, uri, dir: "", composeFile: "docker-compose.yml", images: [] })),
    stopApps: async () => [],
    removeApp: async (name: string) => void installed.delete(name),
    isInstalled: async (app: { name: string; uri: string }) => installed.get(app.name) === app.uri,
    installApp: async (app: { name: string; uri: string }) => {
      signal?.throwIfAborted(); // as the real one: loading images and extracting stop on the signal
      installed.set(app.name, app.uri);
      return { name: app.name, uri: app.uri, dir: "", composeFile: "docker-compose.yml", images: [] };
    },
    startApps: async (names: string[]) => names.map((name) => ({ name, ok: true, state: { uri: installed.get(name)!, state: "healthy" as const, services: [] } })),
    discardStaged: async () => {},
  };
  return rt as AppRuntime;
}

describe("cancelUpdate", () => {
  test("a restore stopped by the signal leaves the update cancelling; the next run restores and cancels it", async () => {
    const db = new DeviceDb(join(dir, "fioup.db"));
    db.setCurrentTarget(target("1", "old"));
    db.createUpdate({ id: "01C", fromTarget: "hw-1", target: target("2", "new"), explicit: false });
    db.setState("01C", "installed");
    db.set("update-touched:01C", { changed: ["web"], removed: [] }); // as install saved it (./touched.ts)
    const installed = new Map([["web", "new"]]); // swapped in, not started
    const cfg = { storagePath: dir } as Config;
    const ctx = (rt: AppRuntime, signal?: AbortSignal): UpdateContext => ({ cfg, db, runtime: rt, hooks: {}, signal, registry: () => { throw new Error("no registry"); } });

    const ac = new AbortController();
    ac.abort(new Error("interrupted"));
    await expect(cancelUpdate(ctx(runtime(installed, ac.signal), ac.signal))).rejects.toThrow("interrupted");
    expect(db.getUpdate("01C")!.state).toBe("cancelling");
    expect(installed.get("web")).toBe("new");

    const done = await cancelUpdate(ctx(runtime(installed)));
    expect(done.state).toBe("canceled");
    expect(installed.get("web")).toBe("old");
    db.close();
  });
});
