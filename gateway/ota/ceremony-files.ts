/**
 * The files of the offline root ceremony as the `gateway keys` commands read and write them:
 * root.json drafts, public and private key files. Every failure names the file and why, and a
 * key file is never overwritten (losing a root key to a typo is not recoverable).
 *
 * A file named on the command line that is not there, is a directory, or is not what it should be
 * is the wrong argument (CeremonyFileError, bad usage); one that is there but cannot be read (no
 * permission, an I/O error) is a failure of the machine, not of the command line
 * (CeremonyFileUnreadableError, exit 1), as `gateway restore` says of its backup file.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { writeNewFilesAtomic } from "../../lib/fs/atomic-write.ts";
import { fsWhy } from "../../lib/fs/why.ts";
import { parsePublicKey, serializeKey, serializePublicKey, type TufKeyPair, type TufPublicKeyWithId } from "../../lib/tuf/keys.ts";
import { parseMetadata } from "../../lib/tuf/metadata.ts";

/** A ceremony file is not there, is a directory, is not what it should be, or would overwrite a key. */
export class CeremonyFileError extends Error {
  override name = "CeremonyFileError";
  constructor(path: string, why: string, options?: ErrorOptions) {
    super(`Cannot use ${path}: ${why}`, options);
  }
}

/**
 * A ceremony file that is there but cannot be read (EACCES, EIO): not a subclass of
 * {@link CeremonyFileError}, so the exit-code table does not take it for bad usage.
 */
export class CeremonyFileUnreadableError extends Error {
  override name = "CeremonyFileUnreadableError";
  constructor(path: string, cause: unknown) {
    super(`Cannot read ${path}: ${fsWhy(cause)}`, { cause });
  }
}

/** Errors that say the path given is wrong (a typo, a folder for a file), not that the file failed. */
const WRONG_PATH = ["ENOENT", "ENOTDIR", "EISDIR"];

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (cause) {
    if (WRONG_PATH.includes((cause as NodeJS.ErrnoException)?.code ?? "")) throw new CeremonyFileError(path, fsWhy(cause));
    throw new CeremonyFileUnreadableError(path, cause);
  }
}

/**
 * Reads a root.json (draft or signed) and checks that it is root metadata.
 *
 * @throws {CeremonyFileError} If it is not there, is a directory, or is not root metadata.
 * @throws {CeremonyFileUnreadableError} If it is there but cannot be read.
 */
export async function readRootFile(path: string): Promise<string> {
  const text = await readText(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the file ("Unexpected identifier ..."), and the file given
    // by mistake may be a passphrase or a key.
    throw new CeremonyFileError(path, "not JSON, so not a root.json");
  }
  const o = json as { private?: unknown; keyval?: unknown } | null;
  if (o && typeof o === "object" && (o.private !== undefined || o.keyval !== undefined))
    throw new CeremonyFileError(path, "it is a key file, not a root.json");
  try {
    parseMetadata("root", text);
  } catch (cause) {
    throw new CeremonyFileError(path, "not TUF root metadata", { cause });
  }
  return text;
}

/**
 * Reads the public key of a public or private key file.
 *
 * @throws {CeremonyFileError} If it is not there or is a directory. @throws {CeremonyFileUnreadableError} If it is there but
 * cannot be read. @throws {KeyFileError} If it holds no ed25519 key.
 */
export async function readPublicKeyFile(path: string): Promise<TufPublicKeyWithId> {
  return parsePublicKey(await readText(path), path);
}

/**
 * Writes `<prefix>.json` (private, 0600) and `<prefix>.pub.json`, refusing to replace either.
 *
 * @throws {FileExistsError} If either file exists (then neither is written).
 */
export async function writeKeyFiles(prefix: string, key: TufKeyPair): Promise<{ private: string; public: string }> {
  const files = { private: `${prefix}.json`, public: `${prefix}.pub.json` };
  await writeNewFilesAtomic(
    [
      { path: files.private, data: serializeKey(key), mode: 0o600 },
      { path: files.public, data: serializePublicKey(key) },
    ],
    "key files are never overwritten",
  );
  return files;
}
