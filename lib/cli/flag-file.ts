/**
 * The contents of a file a flag names (a key, a certificate, a passphrase file): one that cannot
 * be read is bad usage, said with the file and a plain reason rather than a bare errno. A file a
 * flag names as PEM ({@link readPemFlagFile}) without a PEM block is bad usage too, said before
 * anything starts rather than as a TLS or parser error later.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { whyCannotRead } from "../fs/paths.ts";
import { fsWhy } from "../fs/why.ts";
import { whyNotPem } from "../x509/pem.ts";
import { UsageError } from "./command.ts";

/**
 * Reads `path` as UTF-8; `what` names it in the error ("the recipient key", "--tls-cert").
 *
 * @example
 * ```ts
 * const pem = await readFlagFile(flags["tls-cert"], "--tls-cert");
 * ```
 * @throws {UsageError} "Cannot read --tls-cert /x.pem: no such file" and the like.
 */
export async function readFlagFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new UsageError(`Cannot read ${what} ${path}: ${fsWhy(e)}`);
  }
}

/**
 * Reads `path` as {@link readFlagFile} does and checks that it holds PEM, of `label` when given
 * ("CERTIFICATE"): lib/x509/pem.ts {@link whyNotPem} says why not. What the block holds is the
 * caller's to check.
 *
 * @example
 * ```ts
 * const cert = await readPemFlagFile(flags["tls-cert"], "--tls-cert");
 * const ca = await readPemFlagFile(flags.ca, "--ca", "CERTIFICATE");
 * ```
 * @throws {UsageError} "Cannot read --tls-cert /x.pem: no such file", "Cannot read --tls-key /k.json: it holds no PEM (expected -----BEGIN ...)".
 */
export async function readPemFlagFile(path: string, flag: string, label?: string): Promise<string> {
  const text = await readFlagFile(path, flag);
  const why = whyNotPem(text, label);
  if (why) throw new UsageError(`Cannot read ${flag} ${path}: ${why}`);
  return text;
}

/**
 * A path a flag names must be there and readable, and a file or a directory as the flag takes:
 * checked before any work starts, so a mistyped path is bad usage (exit 2) in every binary, not
 * a failure of the step that would have read it.
 *
 * @example
 * ```ts
 * await checkFlagPath("--factory-config", flags["factory-config"], "file");
 * ```
 * @throws {UsageError} "Cannot read --factory-config /x.yml: no such file" and the like.
 */
export async function checkFlagPath(flag: string, path: string, kind?: "file" | "directory"): Promise<void> {
  const why = await whyCannotRead(path, kind);
  if (why) throw new UsageError(`Cannot read ${flag} ${path}: ${why}`);
}
