import { rolloutCommand } from "./_rollouts.ts";

export default rolloutCommand(
  "Show a rollout: state and why, devices per wave and status, deferred installs, failures, recent events",
  (client, id) => client.rollout(id),
);
