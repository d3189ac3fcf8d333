import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { parseDuration } from "../admin/duration.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Create a registration token for devices (printed once; only its hash is kept)",
  description:
    "Devices register with `fioup register --token TOKEN`." +
    "\n\n" +
    ADMIN_HELP,
  flags: {
    ...adminFlags,
    tag: { type: "strings", description: "Tag registered devices join (default: the tags the device asks for)", placeholder: "T" },
    hwid: { type: "string", description: "Only devices of this hardware id may use the token", placeholder: "H" },
    expires: { type: "string", description: "Lifetime: 30d, 12h, 90m, 3600s, 2w", default: "30d", placeholder: "DURATION" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    parseDuration(flags.expires); // fail before any network call
    const client = await adminClient(flags);
    const res = await client.request<{ id: string; token: string; expiresAt: string }>("Cannot create the token", "POST", "/admin/tokens", {
      ...(flags.tag.length ? { tags: flags.tag } : {}),
      ...(flags.hwid ? { hwid: flags.hwid } : {}),
      expiresIn: flags.expires,
    });
    out.result(res, (r) => r.token);
    if (!out.json) out.info(`token ${res.id} expires ${res.expiresAt}`);
  },
});
