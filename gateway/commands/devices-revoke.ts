import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { onDevice } from "./_device-arg.ts";

export default defineCommand({
  summary: "Revoke a device: its certificate is refused from now on and its uuid cannot register again",
  usage: "<uuid>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const uuid = args[0];
    if (!uuid || args.length > 1) throw new UsageError("give exactly one device uuid");
    const client = await adminClient(flags);
    const d = await onDevice(client, uuid, (u) => client.revokeDevice(u));
    out.result(d, (r) => `revoked ${r.uuid} at ${r.revokedAt}`);
  },
});
