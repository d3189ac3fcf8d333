import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { configLocation, loadConfig } from "../config.ts";
import { checkLockName, listUpdateLocks, removeUpdateLock, UpdateLockNotHeldError, updateLocksDir } from "../update/update-locks.ts";
import { requireDeviceState } from "../session.ts";
import { sotaDirFlag } from "./_flags.ts";
import { DEFAULT_LOCK_NAME } from "./lock.ts";

export default defineCommand({
  summary: "Release an update lock taken with `fioup lock` (or any lock file, by name)",
  description: "A daemon waiting on the lock notices at once and installs the deferred update (inside the maintenance window).",
  flags: {
    ...sotaDirFlag,
    ...formatFlag,
    name: { type: "string", description: `Lock name (default "${DEFAULT_LOCK_NAME}")`, placeholder: "NAME" },
    all: { type: "boolean", description: "Release every update lock, whoever took it" },
  },
  run({ flags, out }) {
    if (flags.all && flags.name) throw new UsageError("give --name or --all, not both");
    const loc = configLocation(flags);
    const cfg = loadConfig(loc);
    // In a mistyped folder every lock would be "no such update lock", while the real one still holds.
    requireDeviceState(flags, loc, cfg);
    const dir = updateLocksDir(cfg);
    const names = flags.all ? listUpdateLocks(dir).map((l) => l.name) : [flags.name ?? DEFAULT_LOCK_NAME];
    if (!flags.all) names.forEach(checkLockName);
    const released = names.filter((n) => removeUpdateLock(dir, n));
    const left = listUpdateLocks(dir).map((l) => l.name);
    // A mistyped name while other locks hold installs back: exit 0 would read as "updates may go
    // ahead". With nothing held at all, what was asked for is so (a second unlock is not an error);
    // releasing the lock named while others still hold is what was asked for too (exit 0, "Still held").
    if (!flags.all && released.length === 0 && left.length > 0)
      throw new UpdateLockNotHeldError(names[0]!, left);
    out.result({ released, held: left }, (r) =>
      [
        r.released.length ? `Released ${r.released.map((n) => `"${n}"`).join(", ")}` : `No such update lock${names.length === 1 ? ` "${names[0]}"` : "s"}`,
        ...(r.held.length ? [`Still held: ${r.held.join(", ")}`] : []),
      ].join("\n"),
    );
  },
});
