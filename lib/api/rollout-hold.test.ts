/** Which rollout holds a version back: per version its newest, unless completed; a cancelled one keeps gating. */
import { expect, test } from "bun:test";
import type { RolloutRow } from "./admin.ts";
import { holdingRollouts, holdText } from "./rollout-hold.ts";

const row = (id: string, targetVersion: string, state: RolloutRow["state"], o: Partial<RolloutRow> = {}) =>
  ({ id, targetVersion, state, groupName: null, tag: "main", waves: [10, 100], wave: 0, ...o }) as RolloutRow;

test("per version the newest rollout decides; a completed one gates nobody, a cancelled or halted one gates", () => {
  // Newest first, as GET /admin/rollouts lists them.
  const holds = holdingRollouts([row("r4", "4", "cancelled"), row("r3b", "3", "completed"), row("r3a", "3", "halted"), row("r2b", "2", "halted"), row("r2a", "2", "completed")]);
  expect([...holds.keys()].sort()).toEqual(["2", "4"]);
  expect(holds.get("2")!.id).toBe("r2b");
});

test("one hold in the words every tool uses", () => {
  expect(holdText(row("r1", "4", "paused", { wave: 1, waves: [1, 10, 100] }))).toBe("rollout r1 (paused, tag main, wave 2 of 3) holds version 4 back from the devices it has not released it to");
  expect(holdText(row("r2", "5", "running", { groupName: "eu", tag: null }))).toBe("rollout r2 (running, group eu, wave 1 of 2) holds version 5 back from the devices it has not released it to");
});
