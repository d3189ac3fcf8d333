/**
 * The contents of a file a flag names (a key, a certificate, a passphrase file): one that cannot
 * be read is bad usage, said with the file and a plain reason rather than a bare errno. A file a
 * flag names as PEM ({@link readPemFlagFile}) without a PEM block is bad usage too, said before
 * anything starts rather than as a TLS or parser error later.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { fsWhy } from "../fs/why.ts";
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
 * Reads `path` as {@link readFlagFile} does and checks that it holds a PEM block: `-----BEGIN <label>-----`
 * when `label` is given ("CERTIFICATE"), any `-----BEGIN ` line else (a key may be "PRIVATE KEY",
 * "EC PRIVATE KEY"...). What the block holds is the caller's to check.
 *
 * @example
 * ```ts
 * const cert = await readPemFlagFile(flags["tls-cert"], "--tls-cert");
 * const ca = await readPemFlagFile(flags.ca, "--ca", "CERTIFICATE");
 * ```
 * @throws {UsageError} "Cannot read --tls-cert /x.pem: no such file", "--tls-key /k.json: not a PEM file (no -----BEGIN line)".
 */
export async function readPemFlagFile(path: string, flag: string, label?: string): Promise<string> {
  const text = await readFlagFile(path, flag);
  const begin = label === undefined ? "-----BEGIN " : `-----BEGIN ${label}-----`;
  if (!text.includes(begin)) throw new UsageError(`${flag} ${path}: not a PEM file (no ${label === undefined ? "-----BEGIN" : begin} line)`);
  return text;
}
