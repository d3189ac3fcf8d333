/**
 * sota.toml, the device's config file, in one place: its schema (what fioup
 * reads), the file the gateway hands a newly registered device, parsing with
 * Bun's TOML 1.1 parser and writing with smol-toml. Errors name the file and
 * the line of a syntax error (Bun's parser gives none: smol-toml finds it), or
 * for a value of the wrong type, the key.
 *
 * @module
 */
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parse as smolParse, stringify } from "smol-toml";
import { describeSchemaProblem } from "../api/schema-problem.ts";
import { closest, editDistance } from "../cli/suggest.ts";

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

/** A file is not valid TOML, or a key holds a value of the wrong type. */
export class TomlError extends Error {
  override name = "TomlError";
  constructor(
    readonly file: string,
    why: string,
    options?: ErrorOptions,
  ) {
    super(`Cannot read ${file}: ${why}`, options);
  }
}

/**
 * The longest `uptane.polling_seconds` (a week): the gateway writes no more into a device's
 * sota.toml and fioup reads no more, since past setTimeout's 24.8 days the poll timer would fire
 * at once, every time.
 */
export const MAX_POLLING_SECONDS = 7 * 86_400;

/** A list key of sota.toml (and the agent's [mqtt] table): "a,b" or ["a", "b"]. */
export const CsvOrList = Type.Union([Type.String(), Type.Array(Type.String())], { expected: "a string (comma-separated) or a list of strings" });
/** A number key: 30 or "30" (sota.toml files written by other clients quote their numbers). */
const IntLike = Type.Union([Type.Integer(), Type.String({ pattern: "^[0-9]+$" })], { expected: "a whole number" });
const Open = { additionalProperties: true };

/** The sota.toml keys fioup reads (every key optional; unknown keys are kept and ignored). */
export const SotaToml = Type.Object(
  {
    tls: Type.Optional(Type.Object({ server: Type.Optional(Type.String()) }, Open)),
    import: Type.Optional(
      Type.Object(
        {
          base_path: Type.Optional(Type.String()),
          tls_cacert_path: Type.Optional(Type.String()),
          tls_clientcert_path: Type.Optional(Type.String()),
          tls_pkey_path: Type.Optional(Type.String()),
        },
        Open,
      ),
    ),
    provision: Type.Optional(Type.Object({ primary_ecu_hardware_id: Type.Optional(Type.String()) }, Open)),
    pacman: Type.Optional(
      Type.Object(
        {
          tags: Type.Optional(CsvOrList),
          compose_apps: Type.Optional(CsvOrList),
          compose_apps_root: Type.Optional(Type.String()),
          reset_apps_root: Type.Optional(Type.String()),
          storage_watermark: Type.Optional(IntLike),
        },
        Open,
      ),
    ),
    uptane: Type.Optional(Type.Object({ polling_seconds: Type.Optional(IntLike), polling_sec: Type.Optional(IntLike) }, Open)),
    storage: Type.Optional(Type.Object({ path: Type.Optional(Type.String()) }, Open)),
    fioup: Type.Optional(
      Type.Object(
        {
          docker_host: Type.Optional(Type.String()),
          download_stall_seconds: Type.Optional(IntLike),
          install_window: Type.Optional(Type.String()),
          time_zone: Type.Optional(Type.String()),
          max_hold_seconds: Type.Optional(IntLike),
          offline_expiry_grace_seconds: Type.Optional(IntLike),
        },
        Open,
      ),
    ),
  },
  Open,
);
export type SotaToml = Static<typeof SotaToml>;

/**
 * Parses TOML text; `file` names it in errors, with the line of a syntax error. A leading UTF-8
 * byte order mark (left by some Windows editors) is dropped, not read as a stray key.
 *
 * @example
 * ```ts
 * parseToml('[pacman]\ntags = "main"\n', "sota.toml").pacman; // { tags: "main" }
 * ```
 * @throws {TomlError} If the text is not TOML.
 */
export function parseToml(text: string, file: string): TomlTable {
  text = text.replace(/^\uFEFF+/, "");
  try {
    return Bun.TOML.parse(text) as TomlTable;
  } catch (cause) {
    // Bun's message says it all but where; as a cause it would be said twice.
    const why = (cause as Error).message.replace(/^TOML Parse error: /, "").replace(/ \(0x0A\)$/, " the end of the line");
    const line = syntaxErrorLine(text);
    throw new TomlError(file, `not valid TOML${line === undefined ? "" : ` at line ${line}`}: ${why}`);
  }
}

/** The line (1-based) of the first syntax error as smol-toml sees it: Bun's errors carry only the caller's position. */
function syntaxErrorLine(text: string): number | undefined {
  try {
    smolParse(text);
  } catch (e) {
    const line = (e as { line?: unknown }).line;
    return typeof line === "number" ? line : undefined;
  }
  return undefined; // smol-toml reads it: no line to tell
}

/**
 * Parses a sota.toml or a config drop-in and checks the keys fioup reads.
 *
 * @example
 * ```ts
 * parseSotaToml("[uptane]\npolling_seconds = 30\n", "/etc/sota/conf.d/10-poll.toml").uptane?.polling_seconds; // 30
 * ```
 * @throws {TomlError} If the text is not TOML, or names the first key with a wrong type (`pacman.tags: ...`).
 */
export function parseSotaToml(text: string, file: string): SotaToml & TomlTable {
  const t = parseToml(text, file);
  checkSotaToml(t, file);
  return t;
}

/**
 * One file's table with aktualizr-lite's names for keys fioup also reads put under fioup's, so a
 * sota.toml or a fioctl drop-in written for aktualizr-lite keeps its meaning: `uptane.polling_sec`
 * is read as `uptane.polling_seconds` (fioup's name wins when one file sets both). Done per file,
 * before merging, so a later file wins whichever name it uses.
 *
 * @example
 * ```ts
 * withFioupNames({ uptane: { polling_sec: 60 } }); // { uptane: { polling_seconds: 60 } }
 * ```
 */
export function withFioupNames(t: TomlTable): TomlTable {
  const uptane = t.uptane;
  if (!isTable(uptane) || uptane.polling_sec === undefined) return t;
  const { polling_sec, ...rest } = uptane;
  return { ...t, uptane: { ...rest, polling_seconds: rest.polling_seconds ?? polling_sec } };
}

/** Throws a {@link TomlError} naming the first key of `t` whose value has the wrong type. */
export function checkSotaToml(t: TomlTable, file: string): asserts t is SotaToml & TomlTable {
  if (Value.Check(SotaToml, t)) return;
  throw new TomlError(file, describeSchemaProblem(SotaToml, t));
}

/** Sections fioup reads besides SotaToml's: the agent's `[mqtt]` (fioup/agent/config.ts). */
const OTHER_SECTIONS = ["mqtt"];

/**
 * Keys fioup would silently ignore that were most likely meant for it, one line each naming the
 * file: any unknown key of `[fioup]` (fioup's own section), and in the sections aktualizr-lite
 * configs share, which carry many keys fioup does not read, only a near miss of a key fioup reads
 * there (`tgas`), and a section name near one fioup reads (`[pacmn]`). Never an error: an
 * aktualizr-lite config must keep loading.
 *
 * @example
 * ```ts
 * sotaTomlWarnings({ fioup: { instal_window: "Mon 01:00-02:00" } }, "f"); // ["f: fioup.instal_window is not a key fioup reads, ignored (did you mean install_window?)"]
 * ```
 */
export function sotaTomlWarnings(t: TomlTable, file: string): string[] {
  const sections = SotaToml.properties as Record<string, { properties?: Record<string, unknown> }>;
  const names = [...Object.keys(sections), ...OTHER_SECTIONS];
  const out: string[] = [];
  const meant = (m: string | undefined) => (m === undefined ? "" : ` (did you mean ${m}?)`);
  for (const [name, value] of Object.entries(t)) {
    if (!names.includes(name)) {
      const m = isTable(value) ? closest(name, names) : undefined;
      if (m !== undefined && editDistance(name, m) <= 2) out.push(`${file}: [${name}] is not a section fioup reads, ignored (did you mean [${m}]?)`);
      continue;
    }
    const keys = Object.keys(sections[name]?.properties ?? {});
    if (!isTable(value) || !keys.length) continue;
    for (const k of Object.keys(value)) {
      if (keys.includes(k)) continue;
      let m = closest(k, keys);
      // aktualizr-lite's own keys can lie a few edits from fioup's (docker_apps_root, reset_apps_root).
      if (name !== "fioup" && m !== undefined && editDistance(k, m) > 2) m = undefined;
      if (name === "fioup" || m !== undefined) out.push(`${file}: ${name}.${k} is not a key fioup reads, ignored${meant(m)}`);
    }
  }
  return out;
}

/**
 * Writes nested plain objects as TOML.
 *
 * @example
 * ```ts
 * stringifyToml({ pacman: { tags: "main" } }); // '[pacman]\ntags = "main"\n'
 * ```
 */
export function stringifyToml(t: TomlTable): string {
  const text = stringify(t);
  return text.endsWith("\n") ? text : `${text}\n`;
}

/** Deep-merges `b` over `a`: tables merge key by key, anything else is replaced (later config files win). */
export function mergeToml(a: TomlTable, b: TomlTable): TomlTable {
  const out: TomlTable = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isTable(prev) && isTable(v) ? mergeToml(prev, v) : v;
  }
  return out;
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What the gateway tells a device it just registered. */
export interface SotaConfig {
  server: string;
  hardwareId: string;
  tags: string[];
  /** The app shortlist; absent = every app of the target. */
  apps?: string[];
  pollingSeconds: number;
}

/**
 * The sota.toml the gateway returns to a newly registered device: where the
 * gateway is, its hardware id, tags and app shortlist, and how often to poll.
 *
 * @example
 * ```ts
 * sotaToml({ server: "https://gw:8443", hardwareId: "intel-corei7-64", tags: ["main"], pollingSeconds: 300 });
 * ```
 */
export function sotaToml(c: SotaConfig): string {
  return stringifyToml({
    tls: { server: c.server, ca_source: "file", pkey_source: "file", cert_source: "file" },
    provision: { primary_ecu_hardware_id: c.hardwareId },
    uptane: { polling_seconds: c.pollingSeconds },
    pacman: { tags: c.tags.join(","), ...(c.apps ? { compose_apps: c.apps.join(",") } : {}) },
    import: { tls_cacert_path: "root.crt", tls_clientcert_path: "client.pem", tls_pkey_path: "pkey.pem" },
  });
}
