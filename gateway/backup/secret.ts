/**
 * Where a backup's secret comes from, the same for `gateway backup` and `gateway restore`:
 * a passphrase file, the GATEWAY_BACKUP_PASSPHRASE environment variable, or a key file. Never a
 * command-line value: other users of the machine can read a process's arguments.
 *
 * @module
 */
import { stat } from "node:fs/promises";
import { UsageError, asUsage } from "../../lib/cli/command.ts";
import { readFlagFile } from "../../lib/cli/flag-file.ts";
import { BackupUnreadableError, identityKey, isPrivateKeyPem, recipientKey, type OpenSecret, type SealSecret } from "./seal.ts";

export const PASSPHRASE_ENV = "GATEWAY_BACKUP_PASSPHRASE";

/** Said, not refused: a secret file other users can read (the passphrase, the --identity key) opens every backup. */
async function warnIfShared(path: string, what: string, warn?: (line: string) => void): Promise<void> {
  const mode = (await stat(path).catch(() => undefined))?.mode;
  if (warn && mode !== undefined && mode & 0o077)
    warn(`${what} ${path} can be read by other users of this machine (mode ${(mode & 0o777).toString(8).padStart(4, "0")}): chmod 600 ${path}`);
}

async function passphrase(file: string | undefined, warn?: (line: string) => void): Promise<string | undefined> {
  if (file) await warnIfShared(file, "the passphrase file", warn);
  const p = file ? (await readFlagFile(file, "the passphrase file")).replace(/\r?\n$/, "") : process.env[PASSPHRASE_ENV] || undefined;
  if (p !== undefined && p.length < 8) throw new UsageError("The passphrase must have at least 8 characters");
  return p;
}

/** For sealing: exactly one of a passphrase (file or env) and a recipient public key. */
export async function sealSecret(flags: { "passphrase-file"?: string; recipient?: string }, warn?: (line: string) => void): Promise<SealSecret> {
  const p = await passphrase(flags["passphrase-file"], warn);
  if (p !== undefined && flags.recipient) throw new UsageError(`Give a passphrase or --recipient, not both`);
  if (flags.recipient) {
    const pem = await readFlagFile(flags.recipient, "the recipient key");
    // A private key would seal too (its public half is derived from it), but it then sits beside
    // the backups it opens: the very thing --recipient exists to avoid.
    if (isPrivateKeyPem(pem)) {
      const pub = flags.recipient.endsWith(".key") ? `${flags.recipient.slice(0, -4)}.pub` : "PREFIX.pub";
      throw new UsageError(
        `--recipient ${flags.recipient} is a private key: give the public key (${pub}, from gateway backup keygen) and keep the private key offline`,
      );
    }
    // Checked before any file is read or written: a wrong file is a wrong flag value.
    asUsage([BackupUnreadableError], () => recipientKey(pem), `--recipient ${flags.recipient}: `);
    return { recipientPem: pem };
  }
  if (p !== undefined) return { passphrase: p };
  throw new UsageError(
    `A backup holds the factory CA key and the TUF keys, so it is always encrypted: give --passphrase-file FILE, set ${PASSPHRASE_ENV}, or give --recipient PREFIX.pub (from gateway backup keygen)`,
  );
}

/** For opening: a passphrase (file or env) or the recipient's private key. */
export async function openSecret(flags: { "passphrase-file"?: string; identity?: string }, warn?: (line: string) => void): Promise<OpenSecret> {
  // Both given, the passphrase file was ignored, and a passphrase backup then said "give the passphrase".
  if (flags.identity && flags["passphrase-file"]) throw new UsageError("Give --passphrase-file or --identity, not both");
  if (flags.identity) {
    const pem = await readFlagFile(flags.identity, "the identity key");
    asUsage([BackupUnreadableError], () => identityKey(pem), `--identity ${flags.identity}: `);
    await warnIfShared(flags.identity, "the identity key", warn);
    return { identityPem: pem };
  }
  const p = await passphrase(flags["passphrase-file"], warn);
  if (p !== undefined) return { passphrase: p };
  throw new UsageError(`Give --passphrase-file FILE, set ${PASSPHRASE_ENV}, or give --identity PREFIX.key (from gateway backup keygen)`);
}
