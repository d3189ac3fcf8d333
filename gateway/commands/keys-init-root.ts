import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import type { TufPublicKeyWithId } from "../../lib/tuf/keys.ts";
import { expiresAt, parseMetadata, ROLE_NAMES, type RoleName } from "../../lib/tuf/metadata.ts";
import { draftNextRoot, RootThresholdError } from "../../lib/tuf/root-ceremony.ts";
import { formatSeconds } from "../../lib/api/duration.ts";
import { durationFlag } from "../../lib/cli/flag-values.ts";
import { MIN_ROOT_LIFETIME_SECONDS, rootLifetimeProblem } from "../admin/keys.ts";
import { checkDraftOut, draftOutExists, readPublicKeyFile, readRootFile, writeDraft } from "../ota/ceremony-files.ts";
import { onePerRole, parseRoleValue } from "../ota/role-flag.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

const MIN_LIFETIME = formatSeconds(MIN_ROOT_LIFETIME_SECONDS);

export default defineCommand({
  summary: "Draft the next root.json (unsigned): new root keys and thresholds, or new keys for any role",
  description: [
    "Reads the current root.json from the gateway (--data DIR, or --server URL --token TOKEN) or from --current FILE,",
    "and writes the next version to --out with the changes asked for. Roles without --key keep their keys.",
    "Name the draft <current+1>.root.json: beside it the current root is saved as <current>.root.json, which",
    "`gateway keys sign-root` uses to count the previous root's signatures (left as it is if it holds the current",
    "root already; anything else there, a draft never pushed, is refused and nothing is written). Then each key",
    "holder signs it (gateway keys sign-root) and an operator installs it (gateway keys push-root). No private key",
    `is read here: this can run anywhere. The new root must live at least ${MIN_LIFETIME} (--expires).`,
    "",
    "Example (root 2 of 3 offline keys, the current root being v1):",
    "  gateway keys init-root --data DIR --key root=alice.pub.json --key root=bob.pub.json --key root=carol.pub.json \\",
    "    --threshold root=2 --out ceremony/2.root.json",
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: {
    ...adminFlags,
    current: { type: "string", description: "The current root.json, instead of asking the gateway", placeholder: "FILE" },
    key: { type: "strings", description: "A key for ROLE (public or private key file; only the public part is used)", placeholder: "ROLE=FILE" },
    threshold: { type: "strings", description: "Signatures ROLE needs (default: unchanged, or 1 when its keys change)", placeholder: "ROLE=N" },
    expires: { type: "string", description: `Lifetime of the new root, at least ${MIN_LIFETIME}: 30d, 52w... (the gateway warns when it nears expiry)`, default: "365d", placeholder: "DURATION" },
    out: { type: "string", description: "Where to write the draft: DIR/<current+1>.root.json (e.g. ceremony/2.root.json)", placeholder: "FILE" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.out) throw new UsageError("--out FILE is required");
    const exists = await draftOutExists(flags.out);
    const current = flags.current ? await readRootFile(flags.current) : JSON.stringify(await (await adminClient(flags)).root());
    const cur = parseMetadata("root", current).signed;
    checkDraftOut(flags.out, cur.version, exists);
    const keys: Partial<Record<RoleName, TufPublicKeyWithId[]>> = {};
    for (const v of flags.key) {
      const [role, file] = parseRoleValue(v, "--key");
      (keys[role] ??= []).push(await readPublicKeyFile(file));
    }
    const thresholds: Partial<Record<RoleName, number>> = {};
    for (const v of flags.threshold) {
      const [role, n] = parseRoleValue(v, "--threshold");
      if (!/^[1-9][0-9]{0,2}$/.test(n)) throw new UsageError(`--threshold ${role}=${n}: expected a positive integer`);
      thresholds[role] = onePerRole(thresholds[role], Number(n), "--threshold", role);
    }
    const now = new Date();
    const expires = expiresAt(now, durationFlag("--expires", flags.expires));
    const short = rootLifetimeProblem(expires, now);
    if (short) throw new UsageError(`--expires ${flags.expires}: the new root ${short}`);
    let draft: Uint8Array;
    try {
      draft = draftNextRoot(current, { keys, thresholds, expires });
    } catch (e) {
      // A threshold no set of the role's keys can meet is a bad flag value; nothing is written yet.
      if (!(e instanceof RootThresholdError)) throw e;
      const from = keys[e.role as RoleName] ? "given with --key" : "in the current root";
      throw new UsageError(`--threshold ${e.role}=${e.threshold}: ${e.role} has only ${e.keys} key(s) (${from}), so at most ${e.role}=${e.keys}`);
    }
    const next = parseMetadata("root", draft).signed;
    const { previous: previousPath, alreadyThere: previousThere } = await writeDraft(flags.out, draft, { text: current, root: cur });
    const roles = Object.fromEntries(ROLE_NAMES.map((r) => [r, { keyIds: next.roles[r]!.keyIDs, threshold: next.roles[r]!.threshold }]));
    const prev = cur.roles.root!;
    out.result(
      { draft: flags.out, previous: previousPath, version: next.version, expires: next.expires, roles, previousRoot: { keyIds: prev.keyIDs, threshold: prev.threshold } },
      (r) =>
        [
          `wrote ${r.draft}: root.json v${r.version} (unsigned), expires ${r.expires}; current root ${previousThere ? "already in" : "saved as"} ${r.previous}`,
          ...ROLE_NAMES.map((role) => `  ${role.padEnd(9)} ${r.roles[role]!.threshold} of ${r.roles[role]!.keyIds.join(", ")}`),
          `needs signatures from ${r.previousRoot.threshold} of the current root keys (${r.previousRoot.keyIds.join(", ")})`,
          `and ${r.roles.root!.threshold} of the new root keys: gateway keys sign-root ${r.draft} --key KEYFILE`,
        ].join("\n"),
    );
  },
});
