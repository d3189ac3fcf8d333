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
 * The previous root of a draft is `<N-1>.root.json` beside it ({@link previousRootPath}): init-root
 * saves the current root there and sign-root reads it to count the previous root's signatures, so
 * both commands take the name from here, and init-root refuses a draft named for another version
 * or a file already there that is not the current root (a draft never pushed, with signatures).
 *
 * @module
 */
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Root } from "@tufjs/models";
import { writeNewFilesAtomic } from "../../lib/fs/atomic-write.ts";
import { fsWhy } from "../../lib/fs/why.ts";
import { canonicalJson } from "../../lib/tuf/canonical-json.ts";
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

/**
 * Where the previous root of a draft of root.json v`version` is: `<version-1>.root.json` beside it.
 *
 * @example
 * ```ts
 * previousRootPath("ceremony/2.root.json", 2); // "ceremony/1.root.json"
 * ```
 */
export function previousRootPath(draft: string, version: number): string {
  return join(dirname(draft), `${version - 1}.root.json`);
}

/**
 * Whether the draft's file `out` exists; checked before the current root is read.
 *
 * @throws {CeremonyFileError} If it is a directory.
 */
export async function draftOutExists(out: string): Promise<boolean> {
  const existing = await stat(out).catch(() => undefined);
  if (existing?.isDirectory()) throw new CeremonyFileError(out, "it is a directory: --out names the draft file, e.g. DIR/2.root.json");
  return !!existing;
}

/**
 * Refuses `out` for the draft of the root after v`currentVersion`: named `<N>.root.json` for another
 * version, or there already (`exists`, from {@link draftOutExists}).
 *
 * @throws {CeremonyFileError} If so; nothing is written.
 */
export function checkDraftOut(out: string, currentVersion: number, exists: boolean): void {
  // sign-root finds the previous root as <N-1>.root.json beside the draft: a draft named for another
  // version made that the wrong file (the draft itself, or a signed draft the current root was written over).
  const named = /^([0-9]+)\.root\.json$/.exec(basename(out));
  if (named && Number(named[1]) !== currentVersion + 1)
    throw new CeremonyFileError(out, `the current root is v${currentVersion}, so the draft is v${currentVersion + 1}: name it ${join(dirname(out), `${currentVersion + 1}.root.json`)}`);
  // A draft may already carry signatures collected from key holders: never write over one.
  if (exists) throw new CeremonyFileError(out, "it exists (a draft may hold signatures already): choose another --out or remove it");
}

/**
 * Whether `path`, where sign-root reads the previous root, holds `cur` already (the same signed
 * content); false when nothing is there. Anything else there is refused: a draft of that version never
 * pushed, with signatures that were collected by hand, was lost when the current root was written over it.
 *
 * @throws {CeremonyFileError} If something else is there.
 */
export async function holdsCurrentRoot(path: string, cur: Root): Promise<boolean> {
  if (!(await stat(path).catch(() => undefined))) return false;
  const refuse = (what: string) =>
    new CeremonyFileError(
      path,
      `it ${what}, and the current root v${cur.version} belongs there for sign-root: ` +
        "move it elsewhere (keep it if it is a draft whose signatures are still wanted) and run again; nothing was written",
    );
  let there: string;
  try {
    there = await readRootFile(path);
  } catch (e) {
    if (e instanceof CeremonyFileError) throw refuse("is not a root.json");
    throw e;
  }
  const md = parseMetadata("root", there);
  if (canonicalJson(md.signed.toJSON()) === canonicalJson(cur.toJSON())) return true;
  const sigs = Object.keys(md.signatures).length;
  throw refuse(`holds ${md.signed.version === cur.version ? "another " : ""}root.json v${md.signed.version} (${sigs} signature${sigs === 1 ? "" : "s"}${md.signed.version === cur.version ? ": a draft never pushed?" : ""})`);
}

/**
 * Writes the draft to `out` and the current root (`current.text`, as read; `current.root`, its
 * signed part as the caller parsed it) beside it as its previous root, unless that file holds it
 * already; neither replaces a file.
 *
 * @returns The previous root's path, and whether it was there already.
 * @throws {CeremonyFileError} If something else is where the previous root goes ({@link holdsCurrentRoot}).
 * @throws {FileExistsError} If `out` or the previous root's file appeared meanwhile (then neither is written).
 */
export async function writeDraft(out: string, draft: Uint8Array, current: { text: string; root: Root }): Promise<{ previous: string; alreadyThere: boolean }> {
  const previous = previousRootPath(out, current.root.version + 1);
  const alreadyThere = await holdsCurrentRoot(previous, current.root);
  const why = "a draft may hold signatures already";
  if (alreadyThere) await writeNewFilesAtomic([{ path: out, data: draft }], why);
  else await writeNewFilesAtomic([{ path: previous, data: current.text }, { path: out, data: draft }], why);
  return { previous, alreadyThere };
}
