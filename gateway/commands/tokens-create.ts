import { TOKEN_ROLES, TokenRequest, type TokenRole } from "../../lib/api/admin.ts";
import { HardwareId, Tag } from "../../lib/api/target.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { checkFlagValues, durationFlag } from "../../lib/cli/flag-values.ts";
import { tagList } from "../../lib/cli/comma-list.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Create a token: registration (default), publish, admin or viewer (printed once; only its hash is kept)",
  description: [
    "Roles:",
    "  registration  devices register with it (`fioup register --token TOKEN`), nothing else",
    "  publish       push images to the factory registry and add targets: what `gateway publish` in CI needs",
    "  admin         devices, tokens, targets and key rotation (not the root key: that one stays offline)",
    "  viewer        read-only: the dashboard and the admin API's lists and details, no change",
    "",
    "A registration token registers --max-uses devices (default 1), counted atomically, until it expires.",
    "Devices get the token's --tag tags; only with --allow-device-tags may a device pick its own (when the",
    "token has none) and change them later with its x-ats-tags header.",
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: {
    ...adminFlags,
    role: { type: "string", description: "registration, publish, admin or viewer (read-only)", default: "registration", placeholder: "ROLE" },
    name: { type: "string", description: "A label shown by `tokens list`", placeholder: "TEXT", allowEmpty: true }, // "": no label
    tag: { type: "strings", description: "Registration: a tag registered devices get (letters, digits, . _ -; several comma-separated)", placeholder: "T" },
    hwid: { type: "string", description: "Registration: only devices of this hardware id may use the token", placeholder: "H", allowEmpty: true },
    "max-uses": { type: "number", description: "Registration: how many devices may register with it", default: 1, min: 1, max: 1_000_000, placeholder: "N" },
    "allow-device-tags": { type: "boolean", description: "Registration: devices choose and change their own tags" },
    expires: { type: "string", description: "Lifetime: 30d, 12h, 90m, 3600s, 2w (default: 30d; 365d for publish, admin and viewer)", placeholder: "DURATION" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    const role = flags.role as TokenRole;
    if (!TOKEN_ROLES.includes(role)) throw new UsageError(`--role must be one of ${TOKEN_ROLES.join(", ")}`);
    const maxUses = flags["max-uses"];
    const tags = tagList(flags.tag);
    // Whether given at all, not whether they name anything: `--tag ,` or `--hwid ""` on a publish
    // token was dropped without a word, and the user believed the token limited to them.
    if (role !== "registration" && (flags.tag.length || flags.hwid !== undefined || flags["allow-device-tags"] || flags["max-uses"] !== 1))
      throw new UsageError(`--tag, --hwid, --max-uses and --allow-device-tags are for registration tokens: leave them out of a ${role} token`);
    // A --tag of commas or spaces only ("$TAGS" unset in a script) named no tag: the token would
    // have given devices none, or let them pick their own, instead of the tag meant.
    if (flags.tag.length && !tags.length)
      throw new UsageError(`--tag "${flags.tag.join(",")}" names no tag: give one or more (letters, digits, . _ -; comma-separated), or leave the flag out`);
    if (flags.expires !== undefined) durationFlag("--expires", flags.expires); // fail before any network call
    checkFlagValues("--name", TokenRequest.properties.name, flags.name ? [flags.name] : []);
    checkFlagValues("--tag", Tag, tags);
    checkFlagValues("--hwid", HardwareId, flags.hwid ? [flags.hwid] : []); // an empty --hwid restricts nothing
    const client = await adminClient(flags);
    const res = await client.createToken({
      role,
      ...(flags.name ? { name: flags.name } : {}),
      ...(flags.expires ? { expiresIn: flags.expires } : {}),
      ...(role === "registration"
        ? {
            maxUses,
            ...(tags.length ? { tags } : {}),
            ...(flags.hwid ? { hwid: flags.hwid } : {}),
            ...(flags["allow-device-tags"] ? { allowDeviceTags: true } : {}),
          }
        : {}),
    });
    out.result(res, (r) => r.token);
    if (!out.json) out.info(`${res.role} token ${res.id} expires ${res.expiresAt}`);
  },
});
