/**
 * The fleet query language of dynamic groups: space-separated terms, all of
 * which a device must match (AND), evaluated by the store when used:
 *
 * | term | matches |
 * |---|---|
 * | `key=value` | the label `key` has exactly `value` |
 * | `tag=T` | the device carries tag T (repeatable) |
 * | `hwid=H` (or `hardware-id=H`) | its hardware id is H |
 * | `name~text` | its name contains text (case-insensitive) |
 *
 * A value with spaces is written in double quotes: `site="Berlin 2"`. `tag`,
 * `hwid` and `hardware-id` are reserved, so they cannot be label keys in a query.
 *
 * @module
 */
import { LABEL_KEY_PATTERN } from "../../lib/api/admin.ts";
import type { FleetQuery, GroupRow, Store } from "../store/types.ts";

/** A query, label or label assignment that cannot be read. */
export class InvalidFleetQueryError extends Error {
  override name = "InvalidFleetQueryError";
}

const LABEL_KEY = new RegExp(LABEL_KEY_PATTERN);
const MAX_VALUE = 128;
const TERM = /^([A-Za-z0-9][A-Za-z0-9._/-]*)(=|~)(.*)$/s;

/** Splits at unquoted whitespace; a double-quoted part may hold spaces (the quotes are dropped). */
function terms(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let started = false;
  for (const ch of text) {
    if (ch === '"') {
      quoted = !quoted;
      started = true;
    } else if (!quoted && /\s/.test(ch)) {
      if (started) out.push(cur);
      cur = "";
      started = false;
    } else {
      cur += ch;
      started = true;
    }
  }
  if (quoted) throw new InvalidFleetQueryError(`Invalid query "${text}": a double quote is not closed`);
  if (started) out.push(cur);
  return out;
}

/**
 * Checks a label key and value as the admin API stores them.
 *
 * @throws {InvalidFleetQueryError} If the key does not match `^[a-z0-9][a-z0-9._/-]{0,62}$` or the value is longer than 128.
 */
export function checkLabel(key: string, value: string): void {
  if (!LABEL_KEY.test(key))
    throw new InvalidFleetQueryError(`Invalid label key "${key}": use lower-case letters, digits and . _ / - (at most 63, starting with a letter or digit)`);
  if (value.length > MAX_VALUE) throw new InvalidFleetQueryError(`Invalid value of label "${key}": longer than ${MAX_VALUE} characters`);
}

/**
 * Reads one `key=value` label assignment (the CLI's `gateway devices label`).
 *
 * @example
 * ```ts
 * parseLabel("region=eu"); // ["region", "eu"]
 * ```
 * @throws {InvalidFleetQueryError} If it has no `=` or the key or value is invalid.
 */
export function parseLabel(text: string): [key: string, value: string] {
  const eq = text.indexOf("=");
  if (eq < 0) throw new InvalidFleetQueryError(`Invalid label "${text}": expected key=value`);
  const key = text.slice(0, eq);
  const value = text.slice(eq + 1);
  checkLabel(key, value);
  return [key, value];
}

/**
 * Parses a dynamic group's query into the store's {@link FleetQuery}.
 *
 * @example
 * ```ts
 * parseFleetQuery("region=eu tag=prod hwid=rpi4 name~kiosk");
 * // { labels: { region: "eu" }, tags: ["prod"], hardwareId: "rpi4", nameContains: "kiosk" }
 * ```
 * @throws {InvalidFleetQueryError} If it is empty, a term is not `key=value` / `name~text`, a key is
 *   invalid, or a label, hwid or name is given twice.
 */
export function parseFleetQuery(text: string): FleetQuery {
  const q: FleetQuery = {};
  const list = terms(text);
  if (!list.length) throw new InvalidFleetQueryError("Invalid query: it is empty (give terms like region=eu tag=prod hwid=H name~text)");
  for (const term of list) {
    const m = TERM.exec(term);
    if (!m) throw new InvalidFleetQueryError(`Invalid query term "${term}": expected key=value, tag=T, hwid=H or name~text`);
    const [, key, op, value] = m as unknown as [string, string, "=" | "~", string];
    if (!value) throw new InvalidFleetQueryError(`Invalid query term "${term}": the value is empty`);
    // "region==eu" (as in other query languages) would look for the value "=eu" and match nothing.
    if (/^[=~]/.test(value)) throw new InvalidFleetQueryError(`Invalid query term "${term}": write ${key}${op}${value.replace(/^[=~]+/, "")} (one ${op}: terms are key=value or name~text)`);
    if (value.length > MAX_VALUE) throw new InvalidFleetQueryError(`Invalid query term "${term}": the value is longer than ${MAX_VALUE} characters`);
    if (op === "~") {
      if (key !== "name") throw new InvalidFleetQueryError(`Invalid query term "${term}": only name~text matches part of a value`);
      if (q.nameContains !== undefined) throw new InvalidFleetQueryError(`Invalid query: name~ is given twice`);
      q.nameContains = value;
    } else if (key === "tag") (q.tags ??= []).push(value);
    else if (key === "hwid" || key === "hardware-id") {
      if (q.hardwareId !== undefined) throw new InvalidFleetQueryError(`Invalid query: hwid is given twice`);
      q.hardwareId = value;
    } else {
      checkLabel(key, value);
      if (q.labels?.[key] !== undefined) throw new InvalidFleetQueryError(`Invalid query: label "${key}" is given twice`);
      (q.labels ??= {})[key] = value;
    }
  }
  return q;
}

/** Like {@link parseFleetQuery}, but returns `undefined` instead of throwing. */
export function tryParseFleetQuery(text: string): FleetQuery | undefined {
  try {
    return parseFleetQuery(text);
  } catch {
    return undefined;
  }
}

/**
 * The non-revoked devices a group means now, sorted: a static group's members, or the devices
 * matching a dynamic group's query at this moment.
 *
 * @throws {InvalidFleetQueryError} If a dynamic group's stored query no longer parses.
 */
export async function groupAudience(store: Pick<Store, "queryDevices">, group: GroupRow): Promise<string[]> {
  return store.queryDevices(groupQuery(group));
}

/**
 * What a group means as a fleet query: a static group's member list, or a dynamic group's query.
 *
 * @throws {InvalidFleetQueryError} If a dynamic group's stored query no longer parses.
 */
export const groupQuery = (group: GroupRow): FleetQuery => (group.kind === "dynamic" ? parseFleetQuery(group.query ?? "") : { group: group.name });

/**
 * Of `groups`, those device `uuid` is in now (as their audiences would take it: never while it is
 * revoked), in one read of the device's row.
 *
 * @throws {InvalidFleetQueryError} If a dynamic group's stored query no longer parses.
 */
export async function groupsOfDevice<G extends GroupRow>(store: Pick<Store, "queriesMatching">, uuid: string, groups: G[]): Promise<G[]> {
  const inIt = await store.queriesMatching(uuid, groups.map(groupQuery));
  return groups.filter((_, i) => inIt[i]);
}
