/**
 * The device page's labels field: a textarea with one `key=value` a line, the value being the
 * rest of the line as it stands (commas, `=`, quotes and spaces included), so a label set with
 * the CLI comes back unchanged when the field is submitted as shown. The field replaces the
 * labels: one no longer in it is removed.
 *
 * A value with a line break (possible through the API and the CLI) cannot stand on one line of
 * the field, and a browser changes a carriage return or NUL in a textarea: such labels are left
 * out of the field and listed beside it, and the form keeps them unless a line names their key.
 *
 * @module
 */
import { InvalidFleetQueryError, parseLabel } from "../fleet/query.ts";

/** Whether a label's value survives a round trip through one line of a textarea. */
export const fitsOnALine = (value: string) => !/[\r\n\0]/.test(value);

/** The field's text: the labels that fit on a line, one `key=value` a line, by key. */
export function labelsFormText(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .filter((k) => fitsOnALine(labels[k]!))
    .map((k) => `${k}=${labels[k]}`)
    .join("\n");
}

/**
 * The change a submitted field makes to `current`: every line's label that `current` lacks or holds
 * otherwise set, every label the field could have shown and no longer names removed. Blank lines
 * are skipped; spaces around a key are dropped (a key has none), the value is kept as written.
 * Lines as they stand are left out of `set`, so a device over the limit (labelled by an older
 * gateway) can lose labels through the field, which then holds more lines than one request sets.
 *
 * @throws {InvalidFleetQueryError} If a line is not `key=value`, a key or value is invalid, or a key is given twice.
 */
export function labelsFromForm(text: string, current: Record<string, string>): { set: Record<string, string>; remove: string[] } {
  const set: Record<string, string> = {};
  for (const [i, line] of text.split(/\r\n|\n|\r/).entries()) {
    if (!line.trim()) continue;
    const eq = line.indexOf("=");
    if (eq < 0) throw new InvalidFleetQueryError(`"${line}" is not key=value (line ${i + 1}; one label a line)`);
    const [key, value] = parseLabel(`${line.slice(0, eq).trim()}=${line.slice(eq + 1)}`);
    if (Object.hasOwn(set, key)) throw new InvalidFleetQueryError(`Label "${key}" is given twice: give it one line`);
    set[key] = value;
  }
  const remove = Object.keys(current).filter((k) => !Object.hasOwn(set, k) && fitsOnALine(current[k]!));
  for (const k of Object.keys(set)) if (current[k] === set[k]) delete set[k];
  return { set, remove };
}
