/**
 * A list in a message that may be long (folders, devices, tags): the first few named, the rest
 * counted, "a, b, c and 4 more", so an error stays one readable line however many there are.
 * One wording for every message that names such a list.
 *
 * @module
 */

/**
 * The first `max` of `items`, comma-separated, and how many more there are.
 *
 * @example
 * ```ts
 * namedFew(["a", "b", "c", "d"], 2); // "a, b and 2 more"
 * ```
 */
export function namedFew(items: readonly string[], max: number): string {
  const shown = items.slice(0, max).join(", ");
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}
