import { DEVICE_PAGE_MAX } from "../../lib/api/admin.ts";
import { DeviceUuid } from "../../lib/api/device.ts";
import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { checkFlagValues } from "../../lib/cli/flag-values.ts";
import { table } from "../../lib/cli/table.ts";
import { tagsText } from "../fleet/tags-text.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { devicesWithStatus } from "./_device-status.ts";

export default defineCommand({
  summary: "List registered devices",
  description: [
    "STATUS is the dashboard's: registered, up-to-date, updating, failed, rolled-back, cancelled (on the",
    "device, by its user), offline (seen, then quiet), never-seen (no check-in since it was registered, as",
    "long as offline takes) or revoked (`gateway devices show UUID` says a failure's reason). TAGS are the",
    "gateway's, and \"(follows X)\" the tags the device said it follows where they differ.",
    "--format json prints {devices, next}: the rows of GET /admin/fleet/devices, each with its status.",
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: {
    ...adminFlags,
    limit: { type: "number", description: "At most this many", default: DEVICE_PAGE_MAX, min: 1, max: DEVICE_PAGE_MAX, placeholder: "N" },
    after: { type: "string", description: "Start after this uuid (paging)", placeholder: "UUID" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    checkFlagValues("--after", DeviceUuid, flags.after ? [flags.after] : []); // else a typo pages past every device
    const client = await adminClient(flags);
    const page = await devicesWithStatus(client, { limit: flags.limit, ...(flags.after ? { after: flags.after } : {}) });
    out.result(page, (r) =>
      table(
        ["UUID", "NAME", "HARDWARE ID", "TAGS", "TARGET", "LAST SEEN", "STATUS"],
        r.devices.map((d) => [d.uuid, d.name, d.hardwareId, tagsText(d, ","), d.currentTarget, d.lastSeen, d.status]),
        { empty: "(none)" },
      ) + (r.next ? `\n(more: --after ${r.next})` : ""),
    );
  },
});
