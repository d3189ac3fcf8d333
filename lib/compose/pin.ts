/**
 * Pinning makes an app version immutable: every service image is
 * rewritten to `<registry>/<path>@sha256:<manifest digest>` as resolved at
 * publish time, and `build:` sections are dropped (the device never builds),
 * also one a service takes through a `<<` merge key (that service is written
 * out in full).
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
}

const PINNED = /^[^\s@]+\/[^\s@]+@sha256:[0-9a-f]{64}$/;

/**
 * Rewrites every service image with `resolve` and drops `build:`.
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
  for (const svc of compose.services) {
    const to = await resolve(svc);
    if (!PINNED.test(to)) {
      throw new UnpinnedImageError(to, `Cannot pin service "${svc.name}" of ${compose.file} to`);
    }
    if (svc.build && hasMergeKey(doc.getIn(["services", svc.name], true))) writeOutMerged(doc, svc.name);
    doc.setIn(["services", svc.name, "image"], to);
    if (svc.build) doc.deleteIn(["services", svc.name, "build"]);
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
  return { text: doc.toString({ lineWidth: 0 }), pins };
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
