import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { onDevice } from "./_device-arg.ts";

export default defineCommand({
  summary: "Revoke a device: its certificate is refused from now on and its uuid cannot register again",
  usage: "<uuid>",
  description:
    "A revoked device's uuid stays refused, but the device (or anyone) holding a registration token with uses left can\n" +
    "register again under a new uuid: revoke that token too (gateway tokens list, gateway tokens revoke ID).\n" +
    ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const uuid = args[0];
    if (!uuid || args.length > 1) throw new UsageError("give exactly one device uuid");
    const client = await adminClient(flags);
    const d = await onDevice(client, uuid, (u) => client.revokeDevice(u));
    out.result(d, (r) => `revoked ${r.uuid} at ${r.revokedAt}\n(a registration token with uses left can still register it under a new uuid: gateway tokens revoke it if so)`);
  },
});
