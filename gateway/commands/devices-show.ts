import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { printable } from "../../lib/cli/printable.ts";
import { cell } from "../../lib/cli/table.ts";
import { readDroppedEvents } from "../../lib/api/index.ts";
import { labelsText } from "../fleet/label-text.ts";
import { tagsText } from "../fleet/tags-text.ts";
import { failureReason, updateFailure, updateOutcome } from "../fleet/update-outcome.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { onDevice } from "./_device-arg.ts";
import { deviceStatus } from "./_device-status.ts";

export default defineCommand({
  summary: "Show one device: identity, status (as the dashboard shows it), current target, app states, inventory and recent updates",
  usage: "<uuid>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const uuid = args[0];
    if (!uuid || args.length > 1) throw new UsageError("give exactly one device uuid");
    const client = await adminClient(flags);
    const device = await onDevice(client, uuid, (u) => client.device(u));
    const [{ updates }, fleet] = await Promise.all([client.deviceUpdates(uuid), deviceStatus(client, uuid)]);
    // reportedTags: the tags the device says it follows, which the text shows ("main (follows canary)").
    const status = { status: fleet?.status ?? null, statusDetail: fleet?.statusDetail ?? null, statusAt: fleet?.statusAt ?? null, reportedTags: fleet?.reportedTags ?? null };
    out.result({ ...device, ...status, updates }, (d) => {
      // Every value here may come from the device: cell() and printable() strip control characters.
      const lines = [
        `uuid:        ${cell(d.uuid)}`,
        `name:        ${cell(d.name)}`,
        `hardware id: ${cell(d.hardwareId)}`,
        // As devices list shows them: "main (follows canary)" for a device that follows other tags.
        `tags:        ${printable(tagsText({ tags: d.tags, reportedTags: d.reportedTags ?? undefined }, ","))}${d.tagsFromDevice ? " (set by the device)" : ""}`,
        `labels:      ${printable(labelsText(d.labels)) || "-"}`,
        `target:      ${cell(d.currentTarget)}`,
        `apps:        ${d.apps ? cell(d.apps) : "(all)"}`,
        `created:     ${cell(d.createdAt)}`,
        `last seen:   ${d.lastSeen ? cell(d.lastSeen) : "never"}`,
        `status:      ${d.revokedAt ? `revoked ${cell(d.revokedAt)}` : `${cell(d.status ?? "?")}${d.statusAt ? ` since ${cell(d.statusAt)}` : ""}`}`,
      ];
      // The dashboard's "Last failure": the reason of the failure that set a failed or rolled-back status.
      if (d.statusDetail) lines.push(`last failure: ${printable(failureReason(d.statusDetail))}`);
      for (const [app, st] of Object.entries(d.appsStates?.apps ?? {})) lines.push(`app ${printable(app)}: ${cell(st.state)} (${cell(st.uri)})`);
      for (const u of d.updates.slice(-10)) {
        const dropped = u.events[0] && readDroppedEvents(u.events[0]);
        if (dropped) lines.push(`events dropped on the device: ${dropped.dropped}, dated ${cell(dropped.from)} to ${cell(dropped.to)} by its clock`);
        else {
          const outcome = updateOutcome(u);
          const failure = outcome === "failed" ? updateFailure(u) : undefined;
          const word = { "in progress": "in progress", succeeded: "ok", failed: "FAILED", cancelled: "CANCELLED" }[outcome];
          lines.push(`update ${cell(u.correlationId)}: ${cell(u.targetName ?? "?")} ${word}${failure ? `: ${printable(failure)}` : ""}`);
        }
      }
      return lines.join("\n");
    });
  },
});
