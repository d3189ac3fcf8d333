import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { configLocation, loadConfig } from "../config.ts";
import { LOCK_NAME, updateLocksDir, writeUpdateLock } from "../update/update-locks.ts";
import { requireDeviceState } from "../session.ts";
import { sotaDirFlag } from "./_flags.ts";

export const DEFAULT_LOCK_NAME = "fioup";

export default defineCommand({
  summary: "Hold off installing updates: take an update lock (any file in <storage>/update-locks/ does the same)",
  description:
    "While any update lock is held, updates are fetched but not installed, for at most the maximum hold time\n" +
    "(fioup.max_hold_seconds, or the rollout's; default 24 h, counted from the first time a lock deferred that target), then install anyway.\n" +
    "Apps can bind-mount <storage>/update-locks/ and create or delete a file there instead. `fioup unlock` releases.",
  flags: {
    ...sotaDirFlag,
    ...formatFlag,
    name: { type: "string", description: `Lock name (a file name; default "${DEFAULT_LOCK_NAME}")`, placeholder: "NAME" },
    reason: { type: "string", description: "Why, shown by `fioup status` and sent to the gateway with the deferral", placeholder: "TEXT" },
  },
  run({ flags, out }) {
    const name = flags.name ?? DEFAULT_LOCK_NAME;
    if (!LOCK_NAME.test(name)) throw new UsageError(`invalid lock name "${name}": use 1-64 of A-Z a-z 0-9 . _ - not starting with "."`);
    const loc = configLocation(flags);
    const cfg = loadConfig(loc);
    // A lock taken in a mistyped folder would hold nothing back, and say it did.
    requireDeviceState(flags, loc, cfg);
    const path = writeUpdateLock(updateLocksDir(cfg), name, flags.reason);
    out.result({ name, path, reason: flags.reason ?? null }, (r) => `Update lock "${r.name}" held (${r.path}); \`fioup unlock${r.name === DEFAULT_LOCK_NAME ? "" : ` --name ${r.name}`}\` releases it`);
  },
});
