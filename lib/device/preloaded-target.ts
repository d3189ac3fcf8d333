/**
 * The preloaded target (`<storage path>/preload/target.json`): written by
 * preload next to the blobs it baked into an image, read by fioup as the
 * device's current target until its first update, and by early start to know
 * which apps it may run offline. One schema for both sides.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { TargetEntry } from "../api/target.ts";
import { writeFileAtomic } from "../fs/atomic-write.ts";
import { describeSchemaProblem } from "../api/schema-problem.ts";

export const PreloadedTarget = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    entry: TargetEntry,
    /** The apps whose blobs are in the image; absent in images from before it was written (then: all). */
    apps: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: true },
);
export type PreloadedTarget = Static<typeof PreloadedTarget>;

/** The file exists but is not a preloaded target. */
export class InvalidPreloadedTargetError extends Error {
  override name = "InvalidPreloadedTargetError";
  constructor(path: string, why: string, options?: ErrorOptions) {
    super(`Cannot read the preloaded target ${path}: ${why}`, options);
  }
}

/**
 * Reads the preloaded target, or `undefined` if there is none.
 *
 * @example
 * ```ts
 * const t = readPreloadedTarget(preloadedTargetPath("/var/sota"));
 * ```
 * @throws {InvalidPreloadedTargetError} If the file is unreadable, not JSON or not the schema.
 */
export function readPreloadedTarget(path: string): PreloadedTarget | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new InvalidPreloadedTargetError(path, (cause as Error).message, { cause });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new InvalidPreloadedTargetError(path, "not JSON", { cause });
  }
  if (!Value.Check(PreloadedTarget, doc)) {
    throw new InvalidPreloadedTargetError(path, describeSchemaProblem(PreloadedTarget, doc));
  }
  return doc;
}

/**
 * Writes the preloaded target (atomically).
 *
 * @example
 * ```ts
 * await writePreloadedTarget(path, { name: target.name, entry: target.entry, apps: ["httpd"] });
 * ```
 */
export async function writePreloadedTarget(path: string, t: PreloadedTarget): Promise<void> {
  await writeFileAtomic(path, JSON.stringify({ name: t.name, entry: t.entry, apps: t.apps }, null, 2) + "\n");
}
