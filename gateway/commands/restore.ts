import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { sayInterrupted } from "../../lib/cli/interrupt.ts";
import { restoreBackup } from "../backup/backup.ts";
import { PASSPHRASE_ENV, openSecret } from "../backup/secret.ts";

/**
 * What a restored PostgreSQL data dir needs before it is served, which depends on what was lost
 * with the gateway: the database often survives it (another host, a managed service), and a
 * pg_restore of the backup's older dump over it would throw away the fleet's changes since.
 */
function postgresNextSteps(dataDir: string, registry: boolean): string {
  return [
    "restore: the database is PostgreSQL and is not in the backup. Before starting the gateway:",
    "  - the database is still there (only the gateway host was lost): do not pg_restore; start the gateway with that database,",
    `    the --db it had: gateway serve --data ${dataDir} --db postgres://...`,
    "  - the database was lost too: make a new, empty database (createdb -O USER NAME) and pg_restore the pg_dump taken with",
    "    this backup into it, as USER: pg_restore --no-owner --dbname=postgres://USER@HOST/NAME FILE.pgdump (--no-owner: the",
    "    old server's roles need not exist there; into an empty database only), then serve with --db postgres://USER@HOST/NAME",
    // The database records the registry storage the fleet was served from (registry/setting.ts), which a backup without it does not bring back.
    ...(registry
      ? []
      : [
          "  - the registry is not in this backup (made without --with-registry), and the database names the storage the fleet",
          "    was served from: serve with that storage as --registry-dir if it is still there (or its replicas share it), else",
          "    with --registry-change (the images of earlier targets are pushed again: gateway/README.md, Replicas)",
        ]),
    "  - other gateways still serve that database: starting this data dir with their --db adds a replica (gateway/README.md,",
    "    Replicas); a copy of a running replica's data dir is newer than this backup",
  ].join("\n");
}

export default defineCommand({
  summary: "Restore a gateway data dir from a backup made by `gateway backup`",
  usage: "FILE",
  description: [
    "Checks every record of the backup before anything is kept, unpacks into a temp dir beside",
    "--data and renames it into place, so a failed restore leaves nothing half done: stopped (Ctrl-C,",
    "SIGTERM) while unpacking, it removes what it unpacked, says so, and exits 130 or 143. Registered",
    "devices keep working with the restored gateway: same CA, same TUF keys, same device records;",
    "its first start signs the TUF metadata at versions above any the lost gateway signed since the",
    "backup, which its devices would otherwise refuse as a rollback. A root changed after the backup",
    "(a key ceremony or rotation) cannot be brought back: back up after each.",
    "--force replaces only a gateway data dir (or an empty folder) that no gateway is serving; the",
    "old one is kept beside it as DIR.replaced-<time>, and the command says where.",
    "On PostgreSQL the database is not in the backup: pg_restore its dump only if the database was lost",
    "too (with it still there, serve the restored data dir with its --db); restore says so when it is done.",
    `Secret: --passphrase-file, ${PASSPHRASE_ENV}, or --identity PREFIX.key for a backup made with --recipient PREFIX.pub.`,
  ].join("\n"),
  flags: {
    data: { type: "string", description: "Data dir to create (must not exist or be empty)", placeholder: "DIR" },
    "registry-dir": { type: "string", description: "Put the backup's registry in this new or empty folder (as serve's --registry-dir) instead of DIR/registry", placeholder: "DIR" },
    force: { type: "boolean", description: "Replace an existing gateway data dir (the old one is kept as DIR.replaced-<time>)" },
    "passphrase-file": { type: "string", description: "Read the passphrase from FILE", placeholder: "FILE" },
    identity: { type: "string", description: "Private key for a backup made with --recipient (the PREFIX.key gateway backup keygen wrote)", placeholder: "PREFIX.key" },
    ...formatFlag,
  },
  async run({ flags, args, out }) {
    const file = args[0];
    if (!file || args.length > 1) throw new UsageError("give exactly one backup FILE");
    if (!flags.data) throw new UsageError("--data DIR is required");
    const m = await restoreBackup({
      file,
      dataDir: flags.data,
      secret: await openSecret(flags, (line) => out.info(`restore: warning: ${line}`)),
      force: flags.force,
      ...(flags["registry-dir"] ? { registryDir: flags["registry-dir"] } : {}),
    });
    if (flags["registry-dir"] && !m.registry) out.info(`restore: the backup holds no registry (made without --with-registry): nothing was put in ${flags["registry-dir"]}`);
    if (m.database === "postgres") out.info(postgresNextSteps(flags.data, m.registry));
    out.result(
      { dataDir: flags.data, ...m },
      (r) =>
        `restored ${r.files} files of factory ${r.factory} (backup of ${r.createdAt}) into ${r.dataDir}` +
        (r.registryDir ? `, the registry into ${r.registryDir} (start serve with --registry-dir ${r.registryDir})` : "") +
        (r.replaced ? `\nthe data dir that was there is kept in ${r.replaced}: remove it once the restored gateway works` : ""),
    );
    if (m.replacedOtherCa && m.replaced)
      out.info(
        `restore: warning: the data dir that was there (factory ${m.replacedOtherCa}) had another CA: the devices it registered cannot reach the restored gateway.` +
          ` If this is the wrong backup, put that one back: rm -r ${flags.data} && mv ${m.replaced} ${flags.data}`,
      );
    // A stop that came while the restored dir was put in place: it was finished first (backup.ts), and said above.
    if (m.stoppedBy) return sayInterrupted("gateway restore", m.stoppedBy, `the restore was finished first: ${flags.data} holds the restored data dir`);
  },
});
