/**
 * factory-config.yml: the one file a factory keeps beside its repositories
 * to say which target tags a git ref publishes (`tagging`), what a system
 * image preloads (`preloaded_images`, `ref_options`) and, for publish, which
 * platform a hardware id runs (`platforms`). One typebox schema for everyone
 * who reads it (`gateway publish`, `preload`), so they cannot disagree.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { fsWhy } from "../fs/why.ts";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
import { fieldPath, firstValueProblem, schemaProblem } from "../api/schema-problem.ts";
import { AppName, Tag } from "../api/target.ts";
import { commaList } from "../cli/comma-list.ts";
import { closest } from "../cli/suggest.ts";
import { normalizePlatform, parsePlatform, type Platform } from "../oci/platform.ts";

/** The file is unreadable, not YAML, or has a known key of the wrong shape; the message names the file and key. */
export class FactoryConfigError extends Error {
  override name = "FactoryConfigError";
}


/** A CI build parameter's value, as the CI passes it on: any scalar. */
const ParamValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);
/**
 * `ref_options.<ref>.params`: the CI's build variables, most of them not ours. The two preload
 * reads are checked; a value other than 0 or 1 for ASSEMBLE_SYSTEM_IMAGE is refused rather than
 * read as "on" (`false` and "no" were).
 */
const Params = Type.Object(
  {
    ASSEMBLE_SYSTEM_IMAGE: Type.Optional(
      Type.Union([Type.Literal(0), Type.Literal(1), Type.String({ pattern: "^\\s*[01]\\s*$" }), Type.Boolean()], { expected: '0 or 1 ("0", "1", or false, true)' }),
    ),
    APP_SHORTLIST: Type.Optional(ParamValue),
  },
  { additionalProperties: ParamValue },
);
const RefOption = Type.Object({ params: Type.Optional(Params) }, { additionalProperties: true });
const RefOptions = Type.Record(Type.String(), RefOption);
const PreloadedImages = Type.Object(
  { enabled: Type.Optional(Type.Boolean()), shortlist: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
const PLATFORM_PATTERN = "^[\\w.-]+/[\\w.-]+(/[\\w.-]+)?$";
const HwidPlatforms = Type.Record(Type.String(), Type.String({ pattern: PLATFORM_PATTERN, expected: "a platform: os/arch or os/arch/variant (linux/arm64, linux/arm/v7)" }));
const BuildPlatforms = Type.Array(Type.String({ pattern: `^(arm|arm64|amd64)$|${PLATFORM_PATTERN}`, expected: "an architecture the factory builds for: arm, arm64, amd64 or os/arch" }));
const TagRule = Type.Object({ tag: Tag, inherit: Type.Optional(Type.String()) }, { additionalProperties: true });
const Section = Type.Object(
  {
    preloaded_images: Type.Optional(PreloadedImages),
    tagging: Type.Optional(Type.Record(Type.String(), Type.Array(TagRule, { minItems: 1 }))),
    ref_options: Type.Optional(RefOptions),
    /**
     * hardware id → `os/arch[/variant]`: what publish checks every image against. Or, as
     * Foundries' factory-config.yml writes it, the list of architectures the factory's CI builds
     * containers for (`[arm, arm64, amd64]`): read by {@link platformsOf}.
     */
    platforms: Type.Optional(Type.Union([HwidPlatforms, BuildPlatforms], { expected: "a map of hardware id to os/arch, or a list of architectures (arm, arm64, amd64)" })),
  },
  { additionalProperties: true },
);

export const FactoryConfig = Type.Object(
  {
    lmp: Type.Optional(Section),
    containers: Type.Optional(Section),
    ref_options: Type.Optional(RefOptions),
  },
  { additionalProperties: true },
);
export type FactoryConfig = Static<typeof FactoryConfig>;
/** `lmp` or `containers`. */
export type Section = Static<typeof Section>;

/** Which kind of CI build reads the file: container builds or LmP platform builds. */
export type BuildKind = "containers" | "lmp";

/** What reading a factory-config.yml may say besides its result. */
export interface ReadOptions {
  /** A line for a key that is probably a misspelling but not refused (an unknown top-level section). */
  warn?: (line: string) => void;
}

/**
 * Parses factory-config.yml text (empty text is an empty config). Keys the file's readers do not
 * know are left to the CI that does (notify, mfg_tools, docker_build_args, ...), with three
 * exceptions, so that a typo cannot quietly build no image: any unknown key in `preloaded_images`
 * is refused, and so is a near miss of a known key in `lmp`, `containers`, a `ref_options` entry
 * and its params; a near miss at the top level (`containerz`) is warned about.
 *
 * @example
 * ```ts
 * parseFactoryConfig("containers:\n  tagging:\n    refs/heads/master:\n      - tag: production\n").containers?.tagging;
 * ```
 * @throws {FactoryConfigError} If the YAML is malformed, a known key has the wrong type, a shortlist is empty or names no app, or a key is misspelt (the message has its line).
 */
export function parseFactoryConfig(text: string, file = "factory-config.yml", opts: ReadOptions = {}): FactoryConfig {
  const lines = new LineCounter();
  const yaml = parseDocument(text, { lineCounter: lines });
  if (yaml.errors.length) throw new FactoryConfigError(`Cannot parse ${file}: ${yaml.errors[0]!.message.split("\n")[0]}`);
  const doc: unknown = yaml.toJS() ?? {};
  /** `Invalid <file>: line N: <field>: <why>`, the line where `path` is written, if it is. */
  const invalid = (path: readonly string[], why: string) => {
    const line = lineOf(yaml, lines, path);
    return new FactoryConfigError(`Invalid ${file}: ${line ? `line ${line}: ` : ""}${fieldPath(pointer(path)) || "the top level"}: ${why}`);
  };
  if (isObject(doc)) checkKeys(doc, invalid, (path, why) => opts.warn?.(`${file}: line ${lineOf(yaml, lines, path)}: ${fieldPath(pointer(path))}: ${why}`));
  // An empty section (`containers:` with nothing under it) is as if absent.
  if (isObject(doc)) {
    for (const k of ["lmp", "containers"]) {
      if (doc[k] === null) delete doc[k];
      const sec = doc[k];
      if (isObject(sec)) for (const sk of Object.keys(sec)) if (sec[sk] === null) delete sec[sk];
    }
  }
  if (isObject(doc)) checkPlatformForms(doc, invalid);
  const problem = schemaProblem(FactoryConfig, doc);
  // The same first problem, as a path to find its line by.
  if (problem) throw invalid(pathOf(Value.Errors(FactoryConfig, doc).First()?.path ?? ""), problem.message);
  checkShortlists(doc as FactoryConfig, invalid);
  return doc as FactoryConfig;
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);
/** A path of keys as a JSON pointer, and back. */
const pointer = (path: readonly string[]) => path.map((p) => `/${p.replaceAll("~", "~0").replaceAll("/", "~1")}`).join("");
const pathOf = (ptr: string) => ptr.split("/").slice(1).map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));

/** The line (from 1) where the deepest key or item of `path` present in the document is written. */
function lineOf(yaml: Document, lines: LineCounter, path: readonly string[]): number | undefined {
  let node: unknown = yaml.contents;
  let at: number | undefined;
  for (const seg of path) {
    let next: Node | null | undefined;
    if (isMap(node)) {
      const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === seg);
      if (!pair) break;
      at = (pair.key as Node | null)?.range?.[0] ?? at;
      next = pair.value as Node | null;
    } else if (isSeq(node)) {
      next = node.items[Number(seg)] as Node | undefined;
      if (!next) break;
      at = next.range?.[0] ?? at;
    } else break;
    node = next;
  }
  return at === undefined ? undefined : lines.linePos(at).line;
}

type Invalid = (path: readonly string[], why: string) => FactoryConfigError;

/**
 * Refuses the misspelt keys where preload reads (see {@link parseFactoryConfig}); the known keys
 * are the schema's own. Warns about a near miss of a top-level section.
 */
function checkKeys(doc: Record<string, unknown>, invalid: Invalid, warn: (path: readonly string[], why: string) => void): void {
  const known = (schema: { properties: Record<string, unknown> }) => Object.keys(schema.properties);
  const nearMiss = (obj: unknown, path: string[], keys: string[], refuse: boolean) => {
    if (!isObject(obj)) return;
    for (const k of Object.keys(obj)) {
      if (keys.includes(k)) continue;
      const meant = closest(k, keys);
      if (refuse && meant !== undefined) throw invalid([...path, k], `unknown key: did you mean ${meant}?`);
      if (meant !== undefined) warn([...path, k], `unknown key, ignored: did you mean ${meant}?`);
    }
  };
  const refOptions = (opts: unknown, path: string[]) => {
    if (!isObject(opts)) return;
    for (const [ref, entry] of Object.entries(opts)) {
      nearMiss(entry, [...path, ref], known(RefOption), true);
      if (isObject(entry)) nearMiss(entry.params, [...path, ref, "params"], known(Params), true);
    }
  };
  nearMiss(doc, [], known(FactoryConfig), false);
  refOptions(doc.ref_options, ["ref_options"]);
  for (const kind of ["lmp", "containers"]) {
    const section = doc[kind];
    if (!isObject(section)) continue;
    nearMiss(section, [kind], known(Section), true);
    refOptions(section.ref_options, [kind, "ref_options"]);
    const pre = section.preloaded_images;
    if (!isObject(pre)) continue;
    const keys = known(PreloadedImages);
    for (const k of Object.keys(pre)) {
      const meant = closest(k, keys);
      if (!keys.includes(k)) throw invalid([kind, "preloaded_images", k], `unknown key${meant ? `: did you mean ${meant}?` : ` (known: ${keys.join(", ")})`}`);
    }
  }
}

/**
 * `platforms` in either of its forms, told against the form it is written in (a union's own
 * problem would only say "neither").
 */
function checkPlatformForms(doc: Record<string, unknown>, invalid: Invalid): void {
  for (const kind of ["lmp", "containers"]) {
    const section = doc[kind];
    const value = isObject(section) ? section.platforms : undefined;
    const schema = Array.isArray(value) ? BuildPlatforms : isObject(value) ? HwidPlatforms : undefined;
    const problem = schema && schemaProblem(schema, value);
    if (problem) throw invalid([kind, "platforms", ...pathOf(Value.Errors(schema, value).First()?.path ?? "")], problem.message);
  }
}

/**
 * The two forms of `containers.platforms`: the hardware id → platform map (empty for the list
 * form), and the platforms of the list form (empty for the map form), `arm` being `linux/arm/v7`
 * as Foundries' CI builds it.
 *
 * @example
 * ```ts
 * platformsOf({ platforms: ["arm64", "arm"] }); // { byHwid: {}, built: [{ os: "linux", architecture: "arm64" }, { os: "linux", architecture: "arm", variant: "v7" }] }
 * ```
 */
export function platformsOf(section: Section | undefined): { byHwid: Record<string, string>; built: Platform[] } {
  const p = section?.platforms;
  if (!Array.isArray(p)) return { byHwid: p ?? {}, built: [] };
  const short: Record<string, string> = { arm: "linux/arm/v7", arm64: "linux/arm64", amd64: "linux/amd64" };
  return { byHwid: {}, built: p.map((a) => normalizePlatform(parsePlatform(short[a] ?? a))) };
}

/**
 * A shortlist (`preloaded_images.shortlist`, a `ref_options` APP_SHORTLIST) must name at least
 * one app, each by the app-name rule targets follow: an empty one would build an image that runs
 * nothing, and a bad name could only fail later, once the target is fetched.
 */
function checkShortlists(config: FactoryConfig, invalid: Invalid): void {
  const check = (value: string | number | boolean | undefined, path: string[]) => {
    if (value === undefined) return;
    const apps = commaList(String(value));
    if (!apps.length) throw invalid(path, "empty: it would preload no app (remove it to preload all of the target's apps)");
    const problem = firstValueProblem(AppName, apps);
    if (problem) throw invalid(path, problem);
  };
  const refOptions = (opts: FactoryConfig["ref_options"], path: string[]) => {
    for (const [ref, entry] of Object.entries(opts ?? {})) check(entry.params?.APP_SHORTLIST, [...path, ref, "params", "APP_SHORTLIST"]);
  };
  refOptions(config.ref_options, ["ref_options"]);
  for (const kind of ["lmp", "containers"] as const) {
    check(config[kind]?.preloaded_images?.shortlist, [kind, "preloaded_images", "shortlist"]);
    refOptions(config[kind]?.ref_options, [kind, "ref_options"]);
  }
}

/**
 * Reads and parses a factory-config.yml file.
 *
 * @throws {FactoryConfigError} If it cannot be read or parsed.
 */
export async function readFactoryConfig(path: string, opts: ReadOptions = {}): Promise<FactoryConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new FactoryConfigError(`Cannot read the factory config ${path}: ${fsWhy(err)}`);
  }
  return parseFactoryConfig(text, path, opts);
}
