/**
 * `fioup agent` whose state dir is on a full file system (a tmpfs filled with fallocate):
 * a desired state whose record cannot be written is refused, saying why, and the agent
 * takes the next one once there is room, instead of refusing every later desired state
 * as "in progress" until a restart.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, rmSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { run } from "../harness/tmp.ts";
import { KantoRig } from "./_rig.ts";

let rig: KantoRig;
let state: string;
let mounted = false;

beforeAll(async () => {
  rig = await KantoRig.start("full");
  state = join(rig.dir, "agent-state");
  mkdirSync(state, { recursive: true });
  expect((await run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", state])).code).toBe(0);
  mounted = true;
  // The [mqtt] table is the file's last: the state dir joins it.
  appendFileSync(join(rig.dir, "var/sota/sota.toml"), `state_dir = "${state}"\n`);
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  await rig?.stop();
  if (mounted) await run(["umount", state]);
});

describe("the state dir is full", () => {
  test("a desired state whose record cannot be written is refused with the reason; the next one is applied once there is room", async () => {
    const filler = join(state, "filler");
    const fs = statfsSync(state);
    expect((await run(["fallocate", "-l", String(fs.bavail * fs.bsize), filler])).code).toBe(0);
    try {
      const refused = await rig.apply("full-1", []);
      expect(refused.status).toBe("IDENTIFICATION_FAILED");
      expect(refused.message).toContain(`Cannot start activity full-1: cannot write its record ${join(state, "activity.json")}`);
      expect(refused.message).toContain("ENOSPC");
    } finally {
      rmSync(filler, { force: true });
    }
    expect(await rig.apply("full-2", [])).toMatchObject({ status: "COMPLETED" });
  }, 60_000);
});
