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
import { parse as parseYaml } from "yaml";
import { describeSchemaProblem } from "../api/schema-problem.ts";
import { Tag } from "../api/target.ts";

/** The file is unreadable, not YAML, or has a known key of the wrong shape; the message names the file and key. */
export class FactoryConfigError extends Error {
  override name = "FactoryConfigError";
}


const Params = Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]));
const RefOptions = Type.Record(Type.String(), Type.Object({ params: Type.Optional(Params) }, { additionalProperties: true }));
const PreloadedImages = Type.Object(
  { enabled: Type.Optional(Type.Boolean()), shortlist: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
const TagRule = Type.Object({ tag: Tag, inherit: Type.Optional(Type.String()) }, { additionalProperties: true });
const Section = Type.Object(
  {
    preloaded_images: Type.Optional(PreloadedImages),
    tagging: Type.Optional(Type.Record(Type.String(), Type.Array(TagRule, { minItems: 1 }))),
    ref_options: Type.Optional(RefOptions),
    /** hardware id → `os/arch[/variant]`: what publish checks every image against. */
    platforms: Type.Optional(Type.Record(Type.String(), Type.String({ pattern: "^[\\w.-]+/[\\w.-]+(/[\\w.-]+)?$", expected: "a platform: os/arch or os/arch/variant (linux/arm64, linux/arm/v7)" }))),
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

/** Which kind of CI build reads the file: container builds or LmP platform builds. */
export type BuildKind = "containers" | "lmp";

/**
 * Parses factory-config.yml text (empty text is an empty config).
 *
 * @example
 * ```ts
 * parseFactoryConfig("containers:\n  tagging:\n    refs/heads/master:\n      - tag: production\n").containers?.tagging;
 * ```
 * @throws {FactoryConfigError} If the YAML is malformed or a known key has the wrong type.
 */
export function parseFactoryConfig(text: string, file = "factory-config.yml"): FactoryConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw new FactoryConfigError(`Cannot parse ${file}: ${(err as Error).message.split("\n")[0]}`);
  }
  // An empty section (`containers:` with nothing under it) is as if absent.
  if (doc && typeof doc === "object" && !Array.isArray(doc)) {
    const d = doc as Record<string, unknown>;
    for (const k of ["lmp", "containers"]) {
      if (d[k] === null) delete d[k];
      const sec = d[k] as Record<string, unknown> | undefined;
      if (sec && typeof sec === "object") for (const sk of Object.keys(sec)) if (sec[sk] === null) delete sec[sk];
    }
  }
  if (!Value.Check(FactoryConfig, doc)) {
    throw new FactoryConfigError(`Invalid ${file}: ${describeSchemaProblem(FactoryConfig, doc, "the top level")}`);
  }
  return doc;
}

/**
 * Reads and parses a factory-config.yml file.
 *
 * @throws {FactoryConfigError} If it cannot be read or parsed.
 */
export async function readFactoryConfig(path: string): Promise<FactoryConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new FactoryConfigError(`Cannot read the factory config ${path}: ${fsWhy(err)}`);
  }
  return parseFactoryConfig(text, path);
}
