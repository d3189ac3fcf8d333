import { stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { UsageError, asUsage, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import type { TufPublicKeyWithId } from "../../lib/tuf/keys.ts";
import { expiresAt, parseMetadata, ROLE_NAMES, type RoleName } from "../../lib/tuf/metadata.ts";
import { draftNextRoot, RootThresholdError } from "../../lib/tuf/root-ceremony.ts";
import { InvalidDurationError, parseDuration } from "../admin/duration.ts";
import { CeremonyFileError, readPublicKeyFile, readRootFile } from "../ota/ceremony-files.ts";
import { onePerRole, parseRoleValue } from "../ota/role-flag.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Draft the next root.json (unsigned): new root keys and thresholds, or new keys for any role",
  description: [
    "Reads the current root.json from the gateway (--data DIR, or --server URL --token TOKEN) or from --current FILE,",
    "and writes the next version to --out with the changes asked for. Roles without --key keep their keys.",
    "Beside the draft it writes the current root as <N>.root.json, which `gateway keys sign-root` uses to count",
    "the previous root's signatures. Then each key holder signs it (gateway keys sign-root) and an operator",
    "installs it (gateway keys push-root). No private key is read here: this can run anywhere.",
    "",
    "Example (root 2 of 3 offline keys):",
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
    expires: { type: "string", description: "Lifetime of the new root: 30d, 52w... (the gateway warns when it nears expiry)", default: "365d", placeholder: "DURATION" },
    out: { type: "string", description: "Where to write the draft (e.g. ceremony/2.root.json)", placeholder: "FILE" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.out) throw new UsageError("--out FILE is required");
    // A draft may already carry signatures collected from key holders: never write over one.
    const existing = await stat(flags.out).catch(() => undefined);
    if (existing?.isDirectory()) throw new CeremonyFileError(flags.out, "it is a directory: --out names the draft file, e.g. DIR/2.root.json");
    if (existing) throw new CeremonyFileError(flags.out, "it exists (a draft may hold signatures already): choose another --out or remove it");
    const current = flags.current ? await readRootFile(flags.current) : JSON.stringify(await (await adminClient(flags)).root());
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
    const expires = expiresAt(new Date(), asUsage([InvalidDurationError], () => parseDuration(flags.expires), "--expires: "));
    let draft: Uint8Array;
    try {
      draft = draftNextRoot(current, { keys, thresholds, expires });
    } catch (e) {
      // A threshold no set of the role's keys can meet is a bad flag value; nothing is written yet.
      if (!(e instanceof RootThresholdError)) throw e;
      const from = keys[e.role as RoleName] ? "given with --key" : "in the current root";
      throw new UsageError(`--threshold ${e.role}=${e.threshold}: ${e.role} has only ${e.keys} key(s) (${from}), so at most ${e.role}=${e.keys}`);
    }
    const currentRoles = parseMetadata("root", current).signed.roles;
    const next = parseMetadata("root", draft).signed;
    const previousPath = join(dirname(flags.out), `${next.version - 1}.root.json`);
    if (basename(flags.out) !== basename(previousPath)) await writeFileAtomic(previousPath, current);
    await writeFileAtomic(flags.out, draft, { noReplace: true });
    const roles = Object.fromEntries(ROLE_NAMES.map((r) => [r, { keyIds: next.roles[r]!.keyIDs, threshold: next.roles[r]!.threshold }]));
    const prev = currentRoles.root!;
    out.result(
      { draft: flags.out, previous: previousPath, version: next.version, expires: next.expires, roles, previousRoot: { keyIds: prev.keyIDs, threshold: prev.threshold } },
      (r) =>
        [
          `wrote ${r.draft}: root.json v${r.version} (unsigned), expires ${r.expires}; current root saved as ${r.previous}`,
          ...ROLE_NAMES.map((role) => `  ${role.padEnd(9)} ${r.roles[role]!.threshold} of ${r.roles[role]!.keyIds.join(", ")}`),
          `needs signatures from ${r.previousRoot.threshold} of the current root keys (${r.previousRoot.keyIds.join(", ")})`,
          `and ${r.roles.root!.threshold} of the new root keys: gateway keys sign-root ${r.draft} --key KEYFILE`,
        ].join("\n"),
    );
  },
});
