import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { forceHoldFlag, sotaDirFlag, versionArg } from "./_flags.ts";
import { runUpdateCommand } from "../update/run-command.ts";

export default defineCommand({
  summary: "Check, fetch, install and start the newest target (or the named version)",
  usage: "[version]",
  description:
    "Resumes an interrupted update first. A named version may be older than the running one (an explicit downgrade).\nExit 3 when there is nothing newer.\nOutside the maintenance window (or, with a window, before the clock is set) or while an update lock is held (see `fioup lock`) the update is fetched, then fioup exits 14 (the daemon waits instead); --force installs anyway.\n" +
    "With --offline DIR the target and its content come from an offline bundle (docs/offline.md): its TUF metadata is\n" +
    "verified against the device's trusted root as online, then the same steps, rollback and events; the events are\n" +
    "sent once the gateway answers again.",
  flags: {
    ...sotaDirFlag,
    ...formatFlag,
    ...forceHoldFlag,
    offline: { type: "string", description: "Update from the offline bundle in DIR (made by `gateway export`) instead of the gateway", placeholder: "DIR" },
    watch: { type: "boolean", description: "With --offline: keep watching DIR (a USB stick's mount point) and apply each new bundle once" },
    interval: { type: "number", min: 1, max: 3600, description: "With --watch: seconds between looks at DIR (default 2)", placeholder: "S" },
  },
  async run({ flags, args, out }) {
    const version = versionArg(args);
    if (flags.watch && flags.offline === undefined) throw new UsageError("--watch needs --offline DIR");
    if (flags.interval !== undefined && !flags.watch) throw new UsageError("--interval only applies with --watch (how often a watched DIR is looked at)");
    if (flags.offline !== undefined) {
      if (version !== undefined) throw new UsageError("an offline update takes the bundle's target: give no version");
      const { runOfflineUpdate, runOfflineWatch } = await import("../offline/run.ts");
      if (flags.watch) return await runOfflineWatch(flags, flags.offline, flags.interval ?? 2, out);
      return await runOfflineUpdate(flags, flags.offline, out);
    }
    await runUpdateCommand(flags, plans.update({ version }, { force: flags.force }), out);
  },
});
