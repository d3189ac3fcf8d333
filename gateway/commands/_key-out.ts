/**
 * `--out PREFIX` of the commands that make a key pair (`keys generate`, `backup keygen`): a user
 * names the pair by either file ("bob.pub.json", "id.pub") as often as by its prefix, and taken
 * as a prefix such a name put the private key in a file named as the public one (bob.pub.json)
 * and the public key in bob.pub.pub.json. So a file suffix of the pair is stripped first. And the
 * folder must be there: a mistyped path would otherwise be created and hold a private key nobody
 * finds.
 *
 * @module
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../../lib/cli/command.ts";
import { whyCannotWrite } from "../../lib/fs/paths.ts";

/**
 * The prefix `out` names: `out` without the longest of `suffixes` it ends with, checked writable
 * as `PREFIX + privateSuffix`.
 *
 * @throws {UsageError} If `out` is missing, names a folder, or its folder cannot hold the private key.
 */
export async function keyPairPrefix(out: string | undefined, suffixes: readonly string[], privateSuffix: string): Promise<string> {
  if (!out) throw new UsageError("--out PREFIX is required");
  const suffix = [...suffixes].sort((a, b) => b.length - a.length).find((s) => out.endsWith(s) && out.length > s.length);
  const prefix = suffix ? out.slice(0, -suffix.length) : out;
  // A folder ("keys/", or "keys" that is one) is no prefix: "keys/" made the hidden files keys/.json
  // and keys/.pub.json, and "keys" the pair keys.json beside the folder meant. A file name given
  // ("root.json" beside a folder root/) names the pair plainly, whatever folder shares its prefix.
  if (/[\\/]$/.test(prefix) || (!suffix && (await stat(prefix).then((s) => s.isDirectory(), () => false))))
    throw new UsageError(`--out ${out} names a folder: PREFIX names the key files, e.g. ${join(prefix, "NAME")}`);
  const why = await whyCannotWrite(`${prefix}${privateSuffix}`);
  if (why) throw new UsageError(`--out ${out}: ${why}`);
  return prefix;
}
