/**
 * factory-config.yml rules for preloaded images (seed 002, SPEC §7): which
 * apps a system image built for a git ref carries, and why. Pure: no I/O, so
 * `preload --explain` and the tests see exactly the decision the build uses.
 *
 * @module
 */
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parse as parseYaml } from "yaml";

const Params = Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]));
const RefOptions = Type.Record(Type.String(), Type.Object({ params: Type.Optional(Params) }, { additionalProperties: true }));
const PreloadedImages = Type.Object(
  { enabled: Type.Optional(Type.Boolean()), shortlist: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
const TagRule = Type.Object({ tag: Type.String({ minLength: 1 }), inherit: Type.Optional(Type.String()) }, { additionalProperties: true });
const Section = Type.Object(
  {
    preloaded_images: Type.Optional(PreloadedImages),
    tagging: Type.Optional(Type.Record(Type.String(), Type.Array(TagRule))),
    ref_options: Type.Optional(RefOptions),
  },
  { additionalProperties: true },
);

export const FactoryConfig = Type.Object(
  {
    lmp: Type.Optional(Type.Union([Section, Type.Null()])),
    containers: Type.Optional(Type.Union([Section, Type.Null()])),
    ref_options: Type.Optional(RefOptions),
  },
  { additionalProperties: true },
);
export type FactoryConfig = Static<typeof FactoryConfig>;

export class FactoryConfigError extends Error {
  override name = "FactoryConfigError";
}

/**
 * Parses factory-config.yml text.
 *
 * @throws {FactoryConfigError} If the YAML is malformed or a known key has the wrong type.
 */
export function parseFactoryConfig(text: string, file = "factory-config.yml"): FactoryConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw new FactoryConfigError(`Cannot parse ${file}: ${(err as Error).message}`);
  }
  if (!Value.Check(FactoryConfig, doc)) {
    const e = Value.Errors(FactoryConfig, doc).First();
    throw new FactoryConfigError(`Invalid ${file}: ${e?.path || "/"} ${e?.message ?? "has the wrong shape"}`);
  }
  return doc;
}

/** Which kind of CI build the image belongs to: container builds or LmP platform builds. */
export type BuildKind = "containers" | "lmp";

export interface PreloadDecision {
  /** False: no system image for this ref. */
  assemble: boolean;
  /** The apps to preload; undefined means every app of the target. */
  apps: string[] | undefined;
  /** The target tags this ref publishes, first one preferred. */
  tags: string[];
  /** One line per rule that decided, with where in the file it came from. */
  reasons: string[];
}

const splitList = (s: string) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

const branchOf = (ref: string) => ref.replace(/^refs\/heads\//, "");

/** The tags a ref maps to (`<kind>.tagging`, default: the branch name). */
export function tagsForRef(config: FactoryConfig, ref: string, kind: BuildKind = "containers"): { tags: string[]; reason: string } {
  const fullRef = ref.startsWith("refs/") ? ref : `refs/heads/${ref}`;
  const rules = config[kind]?.tagging?.[fullRef];
  if (rules && rules.length) return { tags: rules.map((r) => r.tag), reason: `${kind}.tagging["${fullRef}"] → ${rules.map((r) => r.tag).join(", ")}` };
  const branch = branchOf(fullRef);
  return { tags: [branch], reason: `no ${kind}.tagging rule for ${fullRef}: the tag is the branch name "${branch}"` };
}

/**
 * Decides what a system image built for `ref` preloads, by the seed's rules:
 * `preloaded_images` of the build kind (lmp inherits containers' unless it sets
 * its own; containers never inherits from lmp), then `ref_options` params
 * `ASSEMBLE_SYSTEM_IMAGE` ("0" = no image) and `APP_SHORTLIST` (overrides the list).
 */
export function decidePreload(config: FactoryConfig, ref: string, kind: BuildKind = "containers"): PreloadDecision {
  const fullRef = ref.startsWith("refs/") ? ref : `refs/heads/${ref}`;
  const reasons: string[] = [];
  const { tags, reason } = tagsForRef(config, fullRef, kind);
  reasons.push(reason);

  let pre = config[kind]?.preloaded_images;
  let from = `${kind}.preloaded_images`;
  if (!pre && kind === "lmp" && config.containers?.preloaded_images) {
    pre = config.containers.preloaded_images;
    from = "containers.preloaded_images (inherited by lmp, which sets none)";
  }
  let enabled = pre?.enabled === true;
  let apps = pre?.shortlist !== undefined ? splitList(pre.shortlist) : undefined;
  if (!pre) reasons.push(`${kind}.preloaded_images is not set${kind === "containers" ? " (containers never inherits from lmp)" : ""}: preloading is off`);
  else reasons.push(`${from}.enabled: ${enabled}${apps ? `, shortlist: ${apps.join(",")}` : ", no shortlist: all apps"}`);

  // ref_options may sit under the build kind's section or at the top level; the section wins.
  const opts = config[kind]?.ref_options?.[fullRef] ?? config.ref_options?.[fullRef];
  const optsFrom = config[kind]?.ref_options?.[fullRef] ? `${kind}.ref_options["${fullRef}"]` : `ref_options["${fullRef}"]`;
  const assembleParam = opts?.params?.ASSEMBLE_SYSTEM_IMAGE;
  if (assembleParam !== undefined) {
    const on = String(assembleParam).trim() !== "0";
    reasons.push(`${optsFrom}.params.ASSEMBLE_SYSTEM_IMAGE: "${String(assembleParam).trim()}" → ${on ? "assemble" : "no system image"}`);
    if (!on) return { assemble: false, apps: undefined, tags, reasons };
    enabled = true;
  }
  const shortlistParam = opts?.params?.APP_SHORTLIST;
  if (shortlistParam !== undefined) {
    apps = splitList(String(shortlistParam));
    reasons.push(`${optsFrom}.params.APP_SHORTLIST overrides the list: ${apps.join(",")}`);
  }
  if (!enabled) return { assemble: false, apps: undefined, tags, reasons };
  return { assemble: true, apps, tags, reasons };
}
