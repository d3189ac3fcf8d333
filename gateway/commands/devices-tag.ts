import { Tags } from "../../lib/api/admin.ts";
import { Tag } from "../../lib/api/target.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { checkFlagValues } from "../../lib/cli/flag-values.ts";
import { printable } from "../../lib/cli/printable.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { onDevice } from "./_device-arg.ts";
import { tagList } from "../../lib/cli/comma-list.ts";

export default defineCommand({
  summary: "Set a device's tags (replaces them; an empty list clears them)",
  usage: "<uuid> <tag1,tag2,...>",
  description:
    "The gateway's record of a device's tags comes from its registration token or from this command; a device's\n" +
    "x-ats-tags header changes it only when its registration token allowed device tags. Otherwise the device\n" +
    "follows these tags from its next check (it writes them into its sota.toml); an empty list clears only the\n" +
    "gateway's record, and the device keeps the tags it has. A tag is a plain name\n" +
    "(letters, digits, . _ -; at most 128, starting with a letter or digit), as publish gives targets.\n\n" +
    ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const [uuid, list] = args;
    if (!uuid || list === undefined || args.length > 2) throw new UsageError("give a device uuid and a comma-separated tag list");
    const tags = tagList(list);
    checkFlagValues("tag", Tag, tags);
    if (tags.length > Tags.maxItems!) throw new UsageError(`tag list: at most ${Tags.maxItems} tags, got ${tags.length}`);
    const client = await adminClient(flags);
    const d = await onDevice(client, uuid, (u) => client.setDeviceTags(u, tags));
    // Stored, but not for long: such a device's next check-in sets the tags it reports.
    if (d.tagsFromDevice)
      out.info(`warning: ${d.uuid} chooses its own tags (its registration token was made with --allow-device-tags): its next check-in replaces these with the tags it follows`);
    out.result(d, (r) => `${r.uuid}: tags ${printable(r.tags.join(",")) || "(none)"}`);
  },
});
