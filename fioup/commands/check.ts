import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { isBadTarget } from "../../lib/tuf/select-target.ts";
import { EXIT } from "../exit-codes.ts";
import { flushEvents } from "../events/sender.ts";
import { openSession } from "../session.ts";
import { currentTarget, hardwareIdMismatch } from "../update/current-target.ts";
import { nextCommand, type UpdateState } from "../update/states.ts";
import { updateLockHolder } from "../update/update-lock.ts";
import { checkTargets } from "../update/tuf-check.ts";
import { shortlistNotIn } from "../update/check-step.ts";
import { sotaDirFlag } from "./_flags.ts";

interface CheckOutput {
  current: { name: string; version: string } | null;
  available: { name: string; version: string; apps: string[]; bad: boolean }[];
  update: { name: string; version: string } | null;
  /** An update started and not finished (fetched, installed...): the update commands carry it on before any other. */
  pending: { name: string; version: string; state: string } | null;
  targetsVersion: number;
  /** The target the device runs is not for its hardware id: what that means and the remedy (also on stderr). */
  warning?: string;
  /** The apps shortlist names apps the target the device would update to (else the one it runs) does not have (also on stderr). */
  shortlistWarning?: string;
}

export default defineCommand({
  summary: "Refresh the signed metadata and list the targets for this device",
  description: "Exit 0 when an update is available, 3 when the device runs the newest target.",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, out }) {
    const s = openSession({ ...flags, requireRegistration: true, choosesTargets: true });
    try {
      const current = currentTarget(s.cfg, s.db);
      const warning = hardwareIdMismatch(s.cfg.hardwareId, current);
      if (warning) out.info(`warning: ${warning}`);
      const bad = s.db.badTargetMarks();
      const pending = s.db.pendingUpdate();
      const holder = pending && updateLockHolder(s.lockPath);
      const r = await checkTargets(s.cfg, s.client!, { current, badTargets: bad });
      const shown = r.updateAvailable && r.selected ? r.selected : current;
      const shortlistWarning = shown && shortlistNotIn(s.cfg.shortlist, shown);
      if (shortlistWarning) out.info(shortlistWarning);
      await flushEvents(s.db, s.client!);
      const result: CheckOutput = {
        current: current ? { name: current.name, version: current.entry.custom.version } : null,
        available: Object.entries(r.matching)
          .map(([name, e]) => ({ name, version: e.custom.version, apps: Object.keys(e.custom.docker_compose_apps), bad: isBadTarget(bad, name, e) }))
          .sort((a, b) => Number(a.version) - Number(b.version)),
        update: r.updateAvailable && r.selected ? { name: r.selected.name, version: r.selected.entry.custom.version } : null,
        pending: pending ? { name: pending.toTarget, version: pending.version, state: pending.state } : null,
        targetsVersion: r.version,
        ...(warning ? { warning } : {}),
        ...(shortlistWarning ? { shortlistWarning } : {}),
      };
      out.result(result, (o) =>
        [
          `Current: ${o.current ? `${o.current.name} (version ${o.current.version})` : "(none)"}`,
          "Targets:",
          ...o.available.map((t) => `  ${t.name}  version ${t.version}  apps ${t.apps.join(",") || "-"}${t.bad ? "  [bad]" : ""}`),
          o.update ? `Update available: ${o.update.name}` : "No update available",
          ...(o.pending ? [`Update in progress: ${o.pending.name} (version ${o.pending.version}), ${o.pending.state}${holder ? `, in ${holder.who} now` : `; next: '${nextCommand(o.pending.state as UpdateState) ?? "fioup update"}'`}`] : []),
        ].join("\n"),
      );
      return result.update ? EXIT.OK : EXIT.NO_UPDATE;
    } finally {
      s.close();
    }
  },
});
