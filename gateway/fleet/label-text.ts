/**
 * A device's labels as a person reads them, in one line: `ring=canary, site="a,b"`. The CLI
 * (`devices show`, `devices label`) and the dashboard's device page print them this way.
 *
 * A value may hold anything up to 128 characters, commas, `=` and quotes included, so a list
 * written plainly (`site=a,ring=canary`) is ambiguous: one label or two? A value is therefore
 * written in double quotes, with JSON's escapes, whenever it holds a comma, a space, a quote, a
 * backslash or a control character, or is empty; every other value is written bare. The quoted
 * form is what a shell and a group query (`site="berlin 2"`, gateway/fleet/query.ts) read back
 * for a value with spaces or commas, so such a label can be copied from the output into a command;
 * a value holding a quote or a backslash is written with JSON's escapes, which a group query does
 * not read (its quotes have no escapes).
 *
 * @module
 */

/** Characters that never need quotes: no space, comma, quote, backslash or control character. */
const BARE = /^[^\s",\\\p{Cc}\p{Cf}]+$/u;

/**
 * One label as `key=value`, the value quoted when a list of labels would otherwise be ambiguous.
 *
 * @example
 * ```ts
 * labelText("site", "a,ring=canary"); // 'site="a,ring=canary"'
 * labelText("ring", "canary"); // "ring=canary"
 * ```
 */
export function labelText(key: string, value: string): string {
  return `${key}=${BARE.test(value) ? value : JSON.stringify(value)}`;
}

/**
 * A device's labels in one line, by key, `, ` between them; "" when it has none.
 *
 * @example
 * ```ts
 * labelsText({ site: "berlin, 2", ring: "canary" }); // 'ring=canary, site="berlin, 2"'
 * ```
 */
export function labelsText(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => labelText(k, labels[k]!))
    .join(", ");
}
