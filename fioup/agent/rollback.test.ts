import { describe, expect, test } from "bun:test";
import type { ApplyDeps } from "./_phase.ts";
import type { Activity, ActivityAction } from "./activity.ts";
import { rollback } from "./rollback.ts";

// An engine where every old container still exists under its own name, and nothing was created.
const deps = {
  engine: {
    listContainers: async () => [],
    containerDetails: async (id: string) => ({ Id: id, Name: `/${id}`, State: { Running: true } }),
    renameContainer: async () => {},
    updateContainer: async () => {},
    stopContainer: async () => {},
    startContainer: async () => {},
  },
  store: { save: () => {} },
  instance: "test",
  onChange: () => {},
} as unknown as ApplyDeps;

const action = (kind: ActivityAction["kind"], name: string, status: ActivityAction["status"], message?: string): ActivityAction => ({
  kind,
  name,
  version: "1",
  ...(kind === "create" ? {} : { old: { id: name, running: true } }),
  status,
  ...(message ? { message } : {}),
});

describe("rollback", () => {
  test("ends every rolled-back action in a failure status saying so, never in progress or success", async () => {
    const a: Activity = {
      activityId: "a1",
      startedAt: "",
      commandFlow: false,
      phase: "activating",
      status: "RUNNING",
      actions: [
        action("destroy", "gone", "REMOVING"),
        action("recreate", "started", "ACTIVATION_SUCCESS"),
        action("create", "starting", "ACTIVATING"),
        action("update", "changed", "UPDATE_SUCCESS"),
        action("recreate", "failed", "ACTIVATION_FAILURE", "the container exited with code 127"),
        action("create", "untouched", "DOWNLOAD_SUCCESS"),
        action("create", "pulling", "DOWNLOADING"),
      ],
    };
    await rollback(deps, a, "the container exited with code 127");
    expect(a.status).toBe("INCOMPLETE");
    expect(a.actions.map((x) => [x.name, x.status, x.message])).toEqual([
      ["gone", "REMOVAL_FAILURE", "rolled back"],
      ["started", "UPDATE_FAILURE", "rolled back"],
      ["starting", "UPDATE_FAILURE", "rolled back"],
      ["changed", "UPDATE_FAILURE", "rolled back"],
      ["failed", "ACTIVATION_FAILURE", "the container exited with code 127"],
      ["untouched", "DOWNLOAD_SUCCESS", undefined],
      ["pulling", "DOWNLOAD_FAILURE", "rolled back"],
    ]);
  });
});
