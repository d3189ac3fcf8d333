import { sizeText } from "../../lib/cli/bytes.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { progressLine } from "../../lib/cli/progress.ts";
import { urlWithoutPassword } from "../../lib/net/shown-url.ts";
import { createBackup } from "../backup/backup.ts";
import { PASSPHRASE_ENV, sealSecret } from "../backup/secret.ts";
import { checkDataFlag } from "./_data-flag.ts";

/**
 * What to run for the part of a PostgreSQL gateway the file does not hold: pg_dump of the --db given
 * (its password masked: this goes to a terminal and to logs), into a file named after --out so the
 * two are kept together.
 */
function pgDumpHint(db: string, out: string): string {
  // No password on the line to copy: pg_dump then reads it from PGPASSWORD or ~/.pgpass (a masked one would be sent).
  const shown = urlWithoutPassword(db);
  const pgDump = Bun.which("pg_dump");
  const notes = [
    pgDump ? `pg_dump found at ${pgDump}` : "pg_dump is not installed here: apt-get install postgresql-client",
    ...(shown === db ? [] : ["the password is left out: pg_dump reads it from PGPASSWORD or ~/.pgpass"]),
  ];
  return (
    "backup: the database is PostgreSQL and is not in this file. Back it up at the same time (or the whole cluster with pg_basebackup):\n" +
    `  pg_dump --format=custom --file=${out.replace(/\.backup$/, "")}.pgdump '${shown}'\n` +
    `(${notes.join("; ")})\n` +
    "It is pg_restored only if the database is lost too: gateway restore says what to do in each case."
  );
}

export default defineCommand({
  summary: "Write an encrypted, consistent backup of a gateway data dir (safe while the gateway runs)",
  description: [
    "Holds the data dir: the factory CA, the server certificate, the TUF signing keys, the admin",
    "token and the registry secret. On SQLite it also holds the database as a consistent snapshot:",
    "devices, tokens, groups, rollouts, events and the signed TUF metadata. On PostgreSQL",
    "(--db postgres://...) those are in the database, which is not in the file: back it up with",
    "pg_dump at the same time. Registry blobs only with --with-registry (from --registry-dir if the",
    "gateway serves one there). Written to a temp file beside --out (outside the data dir) and renamed into",
    "place when complete, so an interrupted backup never replaces the last good one. Stopped (Ctrl-C,",
    "SIGTERM), it removes what it wrote, says so, and exits 130 or 143.",
    `Encrypted with a passphrase (--passphrase-file, or ${PASSPHRASE_ENV}) or for a recipient key`,
    "(--recipient PREFIX.pub, made by `gateway backup keygen`; its PREFIX.key can stay offline).",
  ].join("\n"),
  flags: {
    data: { type: "string", description: "Gateway data dir", placeholder: "DIR" },
    out: { type: "string", description: "Backup file to write (outside the data dir; replaces only an earlier backup)", placeholder: "FILE" },
    db: { type: "string", description: "The --db the gateway runs with (default: DIR/gateway.db)", placeholder: "URL|FILE" },
    "with-registry": { type: "boolean", description: "Include the embedded registry's blobs and manifests" },
    "registry-dir": { type: "string", description: "Where the registry is, as given to serve (default DIR/registry; a folder replicas share)", placeholder: "DIR" },
    "passphrase-file": { type: "string", description: "Read the passphrase from FILE", placeholder: "FILE" },
    recipient: { type: "string", description: "Encrypt for this public key (the PREFIX.pub gateway backup keygen wrote)", placeholder: "PREFIX.pub" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.data) throw new UsageError("--data DIR is required");
    checkDataFlag(flags.data);
    if (!flags.out) throw new UsageError("--out FILE is required");
    if (flags["registry-dir"] && !flags["with-registry"]) throw new UsageError("--registry-dir says where the registry to include is: give it with --with-registry");
    const secret = await sealSecret(flags, (line) => out.info(`backup: warning: ${line}`));
    // Shown as every long command shows it (in place on a terminal, a line every 10 s in a log), cleared before the result.
    const progress = progressLine((line) => out.info(line));
    const m = await createBackup({
      dataDir: flags.data,
      out: flags.out,
      secret,
      db: flags.db,
      withRegistry: flags["with-registry"],
      ...(flags["registry-dir"] ? { registryDir: flags["registry-dir"] } : {}),
      onProgress: (files, bytes) => progress.show(`backup: ${files} files, ${sizeText(bytes)}`),
      onInterrupt: () => progress.clear(),
    }).finally(() => progress.clear());
    if (m.database === "postgres") out.info(pgDumpHint(flags.db!, flags.out));
    // An empty registry folder "included" would read as a registry backed up.
    if (m.registryFiles === 0)
      out.info(
        `backup: --with-registry found no registry files in ${flags["registry-dir"] ?? `${flags.data}/registry`}: if the gateway serves its registry from another folder (serve --registry-dir), give that folder with --registry-dir`,
      );
    out.result({ file: flags.out, ...m }, (r) =>
      `wrote ${r.file}: factory ${r.factory}, ${r.files} files, ${sizeText(r.bytes)}, database ${r.database === "sqlite" ? "included" : "not included (PostgreSQL)"}, registry ${r.registry ? `included (${r.registryFiles} file${r.registryFiles === 1 ? "" : "s"})` : "not included"}`,
    );
  },
});
