import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { printable } from "../../lib/cli/printable.ts";
import { cell } from "../../lib/cli/table.ts";
import { readDroppedEvents } from "../../lib/api/index.ts";
import { labelsText } from "../fleet/label-text.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Show one device: identity, current target, app states, inventory and recent updates",
  usage: "<uuid>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const uuid = args[0];
    if (!uuid || args.length > 1) throw new UsageError("give exactly one device uuid");
    const client = await adminClient(flags);
    const device = await client.device(uuid);
    const { updates } = await client.deviceUpdates(uuid);
    out.result({ ...device, updates }, (d) => {
      // Every value here may come from the device: cell() and printable() strip control characters.
      const lines = [
        `uuid:        ${cell(d.uuid)}`,
        `name:        ${cell(d.name)}`,
        `hardware id: ${cell(d.hardwareId)}`,
        `tags:        ${cell(d.tags)}${d.tagsFromDevice ? " (set by the device)" : ""}`,
        `labels:      ${printable(labelsText(d.labels)) || "-"}`,
        `target:      ${cell(d.currentTarget)}`,
        `apps:        ${d.apps ? cell(d.apps) : "(all)"}`,
        `created:     ${cell(d.createdAt)}`,
        `last seen:   ${d.lastSeen ? cell(d.lastSeen) : "never"}`,
        `status:      ${d.revokedAt ? `revoked ${cell(d.revokedAt)}` : "active"}`,
      ];
      for (const [app, st] of Object.entries(d.appsStates?.apps ?? {})) lines.push(`app ${printable(app)}: ${cell(st.state)} (${cell(st.uri)})`);
      for (const u of d.updates.slice(-10)) {
        const dropped = u.events[0] && readDroppedEvents(u.events[0]);
        if (dropped) lines.push(`events dropped on the device: ${dropped.dropped}, dated ${cell(dropped.from)} to ${cell(dropped.to)} by its clock`);
        else lines.push(`update ${cell(u.correlationId)}: ${cell(u.targetName ?? "?")} ${u.success === undefined ? "in progress" : u.success ? "ok" : "FAILED"}`);
      }
      return lines.join("\n");
    });
  },
});
