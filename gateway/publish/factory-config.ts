/**
 * factory-config.yml's `containers.tagging` (seed 002): which target tags a
 * git ref publishes, e.g. `refs/heads/master: [{tag: master}, {tag: production}]`.
 * Without an entry, a branch publishes targets tagged with its own name.
 *
 * @module
 */
import { parse } from "yaml";

export class FactoryConfigError extends Error {
  override name = "FactoryConfigError";
}

const TAG = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/**
 * Returns the target tags for `ref` (a full ref like `refs/heads/master`, or a bare branch name).
 *
 * @example
 * ```ts
 * tagsForRef("containers:\n  tagging:\n    refs/heads/master:\n      - tag: master\n      - tag: production\n", "refs/heads/master");
 * // ["master", "production"]
 * ```
 * @throws {FactoryConfigError} If the config is malformed or the ref is not a branch and has no entry.
 */
export function tagsForRef(configText: string | undefined, ref: string, file = "factory-config.yml"): string[] {
  const full = ref.startsWith("refs/") ? ref : `refs/heads/${ref}`;
  if (configText !== undefined) {
    let doc: unknown;
    try {
      doc = parse(configText);
    } catch (err) {
      throw new FactoryConfigError(`Invalid factory config ${file}: ${(err as Error).message.split("\n")[0]}`);
    }
    const tagging = (doc as { containers?: { tagging?: unknown } } | null)?.containers?.tagging;
    if (tagging !== undefined && tagging !== null) {
      if (typeof tagging !== "object" || Array.isArray(tagging)) {
        throw new FactoryConfigError(`Invalid factory config ${file}: containers.tagging is not a mapping`);
      }
      const entries = (tagging as Record<string, unknown>)[full];
      if (entries !== undefined) {
        if (!Array.isArray(entries) || entries.length === 0) {
          throw new FactoryConfigError(`Invalid factory config ${file}: containers.tagging.${full} is not a list of {tag: NAME}`);
        }
        const tags = entries.map((e) => (e && typeof e === "object" ? (e as { tag?: unknown }).tag : undefined));
        for (const t of tags) {
          if (typeof t !== "string" || !TAG.test(t)) {
            throw new FactoryConfigError(`Invalid factory config ${file}: containers.tagging.${full} has an invalid tag ${JSON.stringify(t)}`);
          }
        }
        return [...new Set(tags as string[])];
      }
    }
  }
  const m = /^refs\/heads\/(.+)$/.exec(full);
  const branch = m?.[1];
  if (!branch || !TAG.test(branch)) {
    throw new FactoryConfigError(`Cannot choose target tags for ${ref}: not a branch usable as a tag, and ${file} has no containers.tagging entry for it`);
  }
  return [branch];
}
