import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
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
    const path = `/admin/devices/${encodeURIComponent(uuid)}`;
    const device = await client.request<Record<string, any>>(`Cannot show device ${uuid}`, "GET", path);
    const { updates } = await client.request<{ updates: Record<string, any>[] }>(`Cannot list updates of ${uuid}`, "GET", `${path}/updates`);
    out.result<Record<string, any>>({ ...device, updates }, (d) => {
      const lines = [
        `uuid:        ${d.uuid}`,
        `name:        ${d.name}`,
        `hardware id: ${d.hardwareId}`,
        `tags:        ${d.tags.join(",") || "-"}`,
        `target:      ${d.currentTarget ?? "-"}`,
        `apps:        ${d.apps?.join(",") ?? "(all)"}`,
        `created:     ${d.createdAt}`,
        `last seen:   ${d.lastSeen ?? "never"}`,
        `status:      ${d.revokedAt ? `revoked ${d.revokedAt}` : "active"}`,
      ];
      for (const [app, st] of Object.entries((d.appsStates?.apps ?? {}) as Record<string, any>)) lines.push(`app ${app}: ${st.state} (${st.uri})`);
      for (const u of d.updates.slice(-10))
        lines.push(`update ${u.correlationId}: ${u.targetName ?? "?"} ${u.success === undefined ? "in progress" : u.success ? "ok" : "FAILED"}`);
      return lines.join("\n");
    });
  },
});
