/**
 * What a system image built for a git ref preloads, by factory-config.yml's
 * rules. Pure: no I/O, so `preload --explain` and the tests see exactly the
 * decision the build uses.
 *
 * @module
 */
import type { BuildKind, FactoryConfig } from "./factory-config.ts";
import { fullRef, tagsForRef } from "./tagging.ts";
import { commaList } from "../cli/comma-list.ts";

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

/**
 * Decides what a system image built for `ref` preloads: `preloaded_images` of
 * the build kind (lmp inherits containers' unless it sets its own; containers
 * never inherits from lmp), then the `ref_options` params
 * `ASSEMBLE_SYSTEM_IMAGE` (0 or false = no image, 1 or true = an image) and `APP_SHORTLIST` (overrides the list).
 *
 * @example
 * ```ts
 * decidePreload(parseFactoryConfig("containers:\n  preloaded_images:\n    enabled: true\n"), "main").assemble; // true
 * ```
 * @throws {FactoryConfigError} If the ref maps to no tag (see {@link tagsForRef}).
 */
export function decidePreload(config: FactoryConfig, ref: string, kind: BuildKind = "containers"): PreloadDecision {
  const full = fullRef(ref);
  const reasons: string[] = [];
  const { tags, reason } = tagsForRef(config, full, kind);
  reasons.push(reason);

  let pre = config[kind]?.preloaded_images;
  let from = `${kind}.preloaded_images`;
  if (!pre && kind === "lmp" && config.containers?.preloaded_images) {
    pre = config.containers.preloaded_images;
    from = "containers.preloaded_images (inherited by lmp, which sets none)";
  }
  let enabled = pre?.enabled === true;
  let apps = pre?.shortlist !== undefined ? commaList(pre.shortlist) : undefined;
  if (!pre) reasons.push(`${kind}.preloaded_images is not set${kind === "containers" ? " (containers never inherits from lmp)" : ""}: preloading is off`);
  else reasons.push(`${from}.enabled: ${enabled}${apps ? `, shortlist: ${apps.join(",")}` : ", no shortlist: all apps"}`);

  // ref_options may sit under the build kind's section or at the top level; the section wins.
  const opts = config[kind]?.ref_options?.[full] ?? config.ref_options?.[full];
  const optsFrom = config[kind]?.ref_options?.[full] ? `${kind}.ref_options["${full}"]` : `ref_options["${full}"]`;
  const assembleParam = opts?.params?.ASSEMBLE_SYSTEM_IMAGE;
  if (assembleParam !== undefined) {
    // The schema took only 0, 1, "0", "1", false and true.
    const on = assembleParam === true || String(assembleParam).trim() === "1";
    reasons.push(`${optsFrom}.params.ASSEMBLE_SYSTEM_IMAGE: ${JSON.stringify(assembleParam)} → ${on ? "assemble" : "no system image"}`);
    if (!on) return { assemble: false, apps: undefined, tags, reasons };
    enabled = true;
  }
  const shortlistParam = opts?.params?.APP_SHORTLIST;
  if (shortlistParam !== undefined) {
    apps = commaList(String(shortlistParam));
    reasons.push(`${optsFrom}.params.APP_SHORTLIST overrides the list: ${apps.join(",")}`);
  }
  if (!enabled) return { assemble: false, apps: undefined, tags, reasons };
  return { assemble: true, apps, tags, reasons };
}
