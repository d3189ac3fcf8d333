/**
 * Pinning makes an app version immutable: every service image is
 * rewritten to `<registry>/<path>@sha256:<manifest digest>` as resolved at
 * publish time, and `build:` sections are dropped (the device never builds),
 * also one a service takes through a `<<` merge key (that service is written
 * out in full). So is `pull_policy:`: the device loads the pinned image and
 * runs the app with an override naming a local tag, which `always`, `daily`,
 * `weekly` or `build` would have compose pull (or build), failing every start;
 * without it compose uses the loaded image. Each drop is one of the notes
 * returned, for publish to say.
 * An interpolated file keeps its resolved values, with `$` written as `$$`.
 * Everything else in the file, comments included, is kept as written.
 *
 * @module
 */
import { isMap, isScalar, visit, type Document } from "yaml";
import type { ComposeFile, ComposeService } from "./compose-file.ts";
import { escapeInterpolation } from "./interpolate.ts";

/** An image reference is not pinned by digest: publish cannot pin a service to it, and a device cannot load it. */
export class UnpinnedImageError extends Error {
  override name = "UnpinnedImageError";
  constructor(
    readonly ref: string,
    context = "Cannot load image",
  ) {
    super(`${context} "${ref}": it is not pinned by digest (<registry>/<path>@sha256:<digest>)`);
  }
}

/** Resolves one service's image to its pinned reference `<registry>/<path>@sha256:<hex>`. */
export type ImageResolver = (service: ComposeService) => Promise<string>;

/** The pinned file plus, per service, what was written and what it became. */
export interface PinnedCompose {
  text: string;
  pins: Record<string, { from: string | undefined; to: string }>;
  /** What pinning changed besides images and builds, one line each, naming the file and service (a dropped `pull_policy`). */
  notes: string[];
}

const PINNED = /^[^\s@]+\/[^\s@]+@sha256:[0-9a-f]{64}$/;

/**
 * Rewrites every service image with `resolve` and drops `build:` and `pull_policy:`.
 *
 * @example
 * ```ts
 * const { text } = await pinCompose(parseCompose(src, "app/docker-compose.yml"), async (s) =>
 *   `registry.local:5000/main/${s.name}@sha256:${"a".repeat(64)}`);
 * ```
 * @throws {UnpinnedImageError} If `resolve` returns something that is not a
 *   `<registry>/<path>@sha256:<hex>` reference. Errors from `resolve` propagate.
 */
export async function pinCompose(compose: ComposeFile, resolve: ImageResolver): Promise<PinnedCompose> {
  const doc = compose.doc.clone();
  const pins: PinnedCompose["pins"] = {};
  const notes: string[] = [];
  for (const svc of compose.services) {
    const to = await resolve(svc);
    if (!PINNED.test(to)) {
      throw new UnpinnedImageError(to, `Cannot pin service "${svc.name}" of ${compose.file} to`);
    }
    const drops = svc.build || svc.pullPolicy !== undefined;
    if (drops && hasMergeKey(doc.getIn(["services", svc.name], true))) writeOutMerged(doc, svc.name);
    doc.setIn(["services", svc.name, "image"], to);
    if (svc.build) doc.deleteIn(["services", svc.name, "build"]);
    if (svc.pullPolicy !== undefined) {
      doc.deleteIn(["services", svc.name, "pull_policy"]);
      notes.push(
        `${compose.file}, service "${svc.name}": dropped pull_policy: ${svc.pullPolicy} from the pinned file (the device loads the pinned image and never pulls or builds; compose would try to pull its local tag and fail to start the app)`,
      );
    }
    pins[svc.name] = { from: svc.image, to };
  }
  if (compose.interpolated) {
    // Values were resolved at publish time: escape what is left so compose on the device reads them back unchanged.
    visit(doc, {
      Scalar(key, node) {
        if (key !== "key" && typeof node.value === "string" && node.value.includes("$")) node.value = escapeInterpolation(node.value);
      },
    });
  }
  return { text: doc.toString({ lineWidth: 0 }), pins, notes };
}

/** True if a service's map takes keys through `<<` (a merge key: the yaml package reads it as a symbol). */
function hasMergeKey(node: unknown): boolean {
  if (!isMap(node)) return false;
  return node.items.some(({ key }) => isScalar(key) && (key.value === "<<" || (typeof key.value === "symbol" && key.value.description === "<<")));
}

/**
 * Replaces a service that takes keys through `<<` with the service as compose reads it, every
 * key written out (its comments are lost). Deleting `build` deletes only a key written in the
 * service itself: one it takes through the merge stays, and so would the device's compose see it,
 * pointing at a context the bundle does not hold. Changing the anchored map instead would change
 * every other service and `x-` block that merges it.
 */
function writeOutMerged(doc: Document, service: string): void {
  const merged = (doc.toJS({ maxAliasCount: 1000 }) as { services: Record<string, unknown> }).services[service];
  doc.setIn(["services", service], doc.createNode(merged, { aliasDuplicateObjects: false }));
}
