import { rolloutCommand } from "./_rollouts.ts";

export default rolloutCommand(
  "Show a rollout: state and why, devices per wave and status, deferred installs, failures, recent events",
  (client, id) => client.rollout(id),
  [
    "States: RUNNING (waves advance by themselves), PAUSED (by an operator: resume), HALTED (by itself, too many",
    "failures: the reason says how many; resume accepts them), COMPLETED (every wave settled), CANCELLED.",
    "Each wave's devices are SUCCEEDED, FAILED (with the reason below) or PENDING; deferred installs are the",
    "devices an update lock or the maintenance window holds, and until when.",
  ],
);
