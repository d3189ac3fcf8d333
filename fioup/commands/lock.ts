import { join } from "node:path";
import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { configLocation, loadConfig } from "../config.ts";
import { checkLockName, listUpdateLocks, updateLocksDir, writeUpdateLock } from "../update/update-locks.ts";
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
    // "" is a reason too: none, replacing the one a held lock was taken with (a script's `--reason "$WHY"`).
    reason: { type: "string", description: "Why, shown by `fioup status` and sent to the gateway with the deferral", placeholder: "TEXT", allowEmpty: true },
  },
  run({ flags, out }) {
    const name = flags.name ?? DEFAULT_LOCK_NAME;
    checkLockName(name);
    const loc = configLocation(flags);
    const cfg = loadConfig(loc);
    // A lock taken in a mistyped folder would hold nothing back, and say it did.
    requireDeviceState(flags, loc, cfg);
    const dir = updateLocksDir(cfg);
    // Taking a held lock again without --reason keeps the reason it was taken with: a second
    // `fioup lock` must not wipe "surgery in progress" from `fioup status` and the deferral event.
    const held = flags.reason === undefined ? listUpdateLocks(dir).find((l) => l.name === name) : undefined;
    const path = held ? join(dir, name) : writeUpdateLock(dir, name, flags.reason);
    const reason = held ? (held.reason ?? null) : (flags.reason ?? null);
    out.result({ name, path, reason, alreadyHeld: held !== undefined }, (r) =>
      `Update lock "${r.name}" ${r.alreadyHeld ? "was already held" : "held"}${r.reason ? ` (${r.reason})` : ""} (${r.path}); \`fioup unlock${r.name === DEFAULT_LOCK_NAME ? "" : ` --name ${r.name}`}\` releases it`,
    );
  },
});
