/**
 * The `state:<state>` kill points (fioup/fault.ts) fire once that state is durable: a state saved
 * inside a larger transaction (the start step's `started` with the new current target) only
 * after the outermost commit. Each case runs in a child process, since a point that fires
 * SIGKILLs its process; the database is read afterwards, as the next run would find it.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeviceDb } from "./db.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-db-kill-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const target = (v: string) => ({
  name: `hw-${v}`,
  entry: { length: 0, hashes: {}, custom: { version: v, hardwareIds: ["hw"], tags: ["main"], docker_compose_apps: {} } },
});

/** Runs `body` (with `db`, `target` and the update "01A" at `starting`) in a child with FIOUP_FAULT set. */
async function runWithFault(name: string, fault: string, body: string): Promise<{ path: string; signal: unknown; code: number | null; err: string }> {
  const path = join(dir, `${name}.db`);
  const script = join(dir, `${name}.ts`);
  writeFileSync(
    script,
    `import { DeviceDb } from ${JSON.stringify(join(import.meta.dir, "db.ts"))};
const target = ${target.toString()};
const db = new DeviceDb(${JSON.stringify(path)});
db.createUpdate({ id: "01A", fromTarget: null, target: target("1"), explicit: false });
db.setState("01A", "starting");
${body}
db.close();
`,
  );
  const p = Bun.spawn([process.execPath, script], { env: { ...process.env, FIOUP_FAULT: fault }, stderr: "pipe", stdout: "ignore" });
  const err = await new Response(p.stderr).text();
  await p.exited;
  return { path, signal: p.signalCode, code: p.exitCode, err };
}

describe("state kill points", () => {
  test("a state saved inside a transaction fires after the outermost commit: the rerun finds it and what committed with it", async () => {
    const r = await runWithFault(
      "started",
      "state:started",
      `db.transaction(() => { db.setCurrentTarget(target("2")); db.setState("01A", "started"); db.set("after", true); });`,
    );
    expect(r.signal, r.err).toBe("SIGKILL");
    const db = new DeviceDb(r.path);
    try {
      expect(db.getUpdate("01A")!.state).toBe("started");
      expect(db.currentTarget()?.name).toBe("hw-2");
      expect(db.get<boolean>("after")).toBe(true); // written after setState, in the same commit
    } finally {
      db.close();
    }
  });

  test("a state saved alone fires once it is committed", async () => {
    const r = await runWithFault("alone", "state:completing", `db.setState("01A", "completing");`);
    expect(r.signal, r.err).toBe("SIGKILL");
    const db = new DeviceDb(r.path);
    try {
      expect(db.getUpdate("01A")!.state).toBe("completing");
    } finally {
      db.close();
    }
  });

  test("a state saved in a part that rolled back never fires", async () => {
    const r = await runWithFault(
      "rolled-back",
      "state:started",
      `db.transaction(() => {
  try { db.transaction(() => { db.setState("01A", "started"); throw new Error("no"); }); } catch {}
  db.set("after", true);
});`,
    );
    expect(r.signal, r.err).toBeNull();
    expect(r.code, r.err).toBe(0);
    const db = new DeviceDb(r.path);
    try {
      expect(db.getUpdate("01A")!.state).toBe("starting");
      expect(db.get<boolean>("after")).toBe(true);
    } finally {
      db.close();
    }
  });
});
