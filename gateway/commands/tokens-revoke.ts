import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Revoke a token by id (registration, publish, admin or viewer): refused from now on, with the registry tokens it got",
  usage: "<id>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const id = args[0];
    if (!id || args.length > 1) throw new UsageError("give exactly one token id (see `gateway tokens list`)");
    const client = await adminClient(flags);
    const r = await client.revokeToken(id);
    out.result(r, (x) => `revoked token ${x.id} at ${x.revokedAt}`);
  },
});
