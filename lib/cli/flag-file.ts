/**
 * The contents of a file a flag names (a key, a certificate, a passphrase file): one that cannot
 * be read is bad usage, said with the file and a plain reason rather than a bare errno.
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
