/**
 * The human-readable publish report: apps, their services and pinned images,
 * where each image came from and its platforms, app digests, the targets made
 * and what was pushed.
 *
 * @module
 */
import { sizeText } from "../../lib/cli/bytes.ts";
import { table as printTable } from "../../lib/cli/table.ts";
import type { PublishResult } from "./publish.ts";

const table = (head: string[], rows: string[][]): string => printTable(head, rows, { rule: true });

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

export function renderPublish(r: PublishResult): string {
  const out: string[] = [];
  out.push(
    table(
      ["APP", "SERVICE", "IMAGE", "PINNED"],
      r.apps.flatMap((a) => a.services.map((s) => [a.name, s.name, s.image ?? "(build)", s.pinned])),
    ),
  );
  out.push("");
  out.push(table(["IMAGE", "FROM", "SOURCE", "PLATFORMS"], r.images.map((i) => [i.name, i.from, i.reused ? `${i.source} (reused)` : i.source, i.platforms.join(",")])));
  out.push("");
  out.push(table(["APP", "URI", "BUNDLE"], r.apps.map((a) => [a.name, a.uri, `${sizeText(a.bundleSize)}, ${a.files.length} files`])));
  out.push("");
  out.push(
    table(
      ["TARGET", "VERSION", "HARDWARE ID", "TAGS"],
      Object.entries(r.targets).map(([name, t]) => [name, t.custom.version, t.custom.hardwareIds.join(","), t.custom.tags.join(",")]),
    ),
  );
  out.push("");
  const verb = r.dryRun ? "Dry run: nothing pushed, no targets added" : `Pushed ${sizeText(r.pushed.bytes)} (${count(r.pushed.blobs, "blob")}, ${count(r.pushed.manifests, "manifest")}; ${count(r.pushed.blobsPresent, "blob")} already present)`;
  out.push(`${verb}. Commit ${r.commit.slice(0, 12)}${r.dirty ? "-dirty (uncommitted changes)" : ""}, ${(r.durationMs / 1000).toFixed(1)} s.`);
  return out.join("\n");
}
