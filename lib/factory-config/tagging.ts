/**
 * Which target tags a git ref publishes: `<kind>.tagging["refs/heads/x"]`,
 * else the branch name. Used by `gateway publish` (tags of new targets) and
 * preload (which target a system image carries).
 *
 * @module
 */
import { isTag } from "../api/target.ts";
import { FactoryConfigError, type BuildKind, type FactoryConfig } from "./factory-config.ts";

/** `refs/heads/<branch>` for a bare branch name; full refs as they are. */
export const fullRef = (ref: string): string => (ref.startsWith("refs/") ? ref : `refs/heads/${ref}`);

/**
 * The tags `ref` maps to, with the rule that decided.
 *
 * @example
 * ```ts
 * tagsForRef(parseFactoryConfig("containers:\n  tagging:\n    refs/heads/master:\n      - tag: master\n      - tag: production\n"), "master").tags;
 * // ["master", "production"]
 * ```
 * @throws {FactoryConfigError} If the ref is not a branch usable as a tag and has no tagging entry.
 */
export function tagsForRef(config: FactoryConfig, ref: string, kind: BuildKind = "containers", file = "factory-config.yml"): { tags: string[]; reason: string } {
  const full = fullRef(ref);
  const rules = config[kind]?.tagging?.[full];
  if (rules && rules.length) {
    const tags = [...new Set(rules.map((r) => r.tag))];
    return { tags, reason: `${kind}.tagging["${full}"] → ${tags.join(", ")}` };
  }
  const branch = /^refs\/heads\/(.+)$/.exec(full)?.[1];
  if (!branch || !isTag(branch)) {
    throw new FactoryConfigError(`Cannot choose target tags for ${ref}: not a branch usable as a tag, and ${file} has no ${kind}.tagging entry for it`);
  }
  return { tags: [branch], reason: `no ${kind}.tagging rule for ${full}: the tag is the branch name "${branch}"` };
}
