/**
 * A device's tags as a person reads them, with the tags it says it follows where those differ:
 * `main (follows canary)`. The gateway's tags are what rollouts and groups count; a device that
 * follows others (registered by a fioup before 2026-12-06 with a --tag its token overrode, or
 * pinned by its owner's pacman.tags) installs what those select, so a list shows both. The CLI's
 * `devices list` and the dashboard's device list and page print them this way.
 *
 * @module
 */

/**
 * The tags `sep`-joined ("-" for none), and " (follows X)" when the tags the device last reported
 * (`reportedTags`, null or absent before it reported any) are not the same set.
 *
 * @example
 * ```ts
 * tagsText({ tags: ["main"], reportedTags: ["canary"] }); // "main (follows canary)"
 * tagsText({ tags: ["main", "beta"], reportedTags: ["beta", "main"] }, ","); // "main,beta"
 * ```
 */
export function tagsText(d: { tags: string[]; reportedTags?: string[] | null }, sep = ", "): string {
  const own = d.tags.join(sep) || "-";
  const reported = d.reportedTags;
  if (!reported) return own;
  const tags = new Set(d.tags);
  const same = new Set(reported).size === tags.size && reported.every((t) => tags.has(t));
  return same ? own : `${own} (follows ${reported.join(sep) || "no tag"})`;
}
