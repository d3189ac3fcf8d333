import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { table } from "./_render.ts";

export default defineCommand({
  summary: "List registered devices",
  flags: {
    ...adminFlags,
    limit: { type: "string", description: "At most this many", default: "1000", placeholder: "N" },
    after: { type: "string", description: "Start after this uuid (paging)", placeholder: "UUID" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    const client = await adminClient(flags);
    const q = new URLSearchParams({ limit: flags.limit, ...(flags.after ? { after: flags.after } : {}) });
    const res = await client.request<{ devices: Record<string, unknown>[]; next?: string }>("Cannot list devices", "GET", `/admin/devices?${q}`);
    out.result(res, (r) =>
      table(
        r.devices.map((d) => ({ ...d, status: d.revokedAt ? "revoked" : "active" })),
        ["uuid", "name", "hardwareId", "tags", "currentTarget", "lastSeen", "status"],
      ),
    );
  },
});
