/**
 * Where a backup's secret comes from, the same for `gateway backup` and `gateway restore`:
 * a passphrase file, the GATEWAY_BACKUP_PASSPHRASE environment variable, or a key file. Never a
 * command-line value: other users of the machine can read a process's arguments.
 *
 * @module
 */
import { UsageError, asUsage } from "../../lib/cli/command.ts";
import { readFlagFile } from "../../lib/cli/flag-file.ts";
import { BackupUnreadableError, identityKey, isPrivateKeyPem, recipientKey, type OpenSecret, type SealSecret } from "./seal.ts";

export const PASSPHRASE_ENV = "GATEWAY_BACKUP_PASSPHRASE";

async function passphrase(file: string | undefined): Promise<string | undefined> {
  const p = file ? (await readFlagFile(file, "the passphrase file")).replace(/\r?\n$/, "") : process.env[PASSPHRASE_ENV] || undefined;
  if (p !== undefined && p.length < 8) throw new UsageError("The passphrase must have at least 8 characters");
  return p;
}

/** For sealing: exactly one of a passphrase (file or env) and a recipient public key. */
export async function sealSecret(flags: { "passphrase-file"?: string; recipient?: string }): Promise<SealSecret> {
  const p = await passphrase(flags["passphrase-file"]);
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
    `A backup holds the factory CA key and the TUF keys, so it is always encrypted: give --passphrase-file FILE, set ${PASSPHRASE_ENV}, or give --recipient PUBLIC.pem`,
  );
}

/** For opening: a passphrase (file or env) or the recipient's private key. */
export async function openSecret(flags: { "passphrase-file"?: string; identity?: string }): Promise<OpenSecret> {
  if (flags.identity) {
    const pem = await readFlagFile(flags.identity, "the identity key");
    asUsage([BackupUnreadableError], () => identityKey(pem), `--identity ${flags.identity}: `);
    return { identityPem: pem };
  }
  const p = await passphrase(flags["passphrase-file"]);
  if (p !== undefined) return { passphrase: p };
  throw new UsageError(`Give --passphrase-file FILE, set ${PASSPHRASE_ENV}, or give --identity PRIVATE.pem`);
}
