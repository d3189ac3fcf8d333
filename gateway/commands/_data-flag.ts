/**
 * `--data DIR`, the flag every command that reads a gateway's data dir takes (the admin commands,
 * backup, registry gc): a folder that is not there is a typo, so it is bad usage (exit 2), said
 * the same way by every command before anything is read.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { UsageError } from "../../lib/cli/command.ts";

/** @throws {UsageError} If `dir` does not exist. */
export function checkDataFlag(dir: string): void {
  if (!existsSync(dir)) throw new UsageError(`--data ${dir}: no such folder (the gateway's data dir)`);
}
