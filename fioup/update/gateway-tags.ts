/**
 * The device follows the tags the gateway decided for it. Tags choose which targets a device can
 * select, and a rollout that names a tag counts its devices by the gateway's record: a device
 * following other tags than the gateway shows would be counted in a rollout it never installs
 * (and time it out), or install versions meant for another tag. Where the gateway decides a
 * device's tags (its registration token did not let it choose them; `gateway devices tag` changes
 * them), it says them on every timestamp answer (DEVICE_TAGS_HEADER, lib/api/device.ts); the check
 * adopts them before it selects, and writes them into sota.toml so every later command (status,
 * the daemon after a restart, an offline update) uses them too.
 *
 * A device owner's `pacman.tags` in `/etc/sota/conf.d` (the last word on the device, see
 * fioup/config.ts) is left alone: the device keeps it, and the check says that it differs.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { sep } from "node:path";
import { readCheckinList } from "../../lib/api/device.ts";
import { isTag } from "../../lib/api/target.ts";
import { parseToml, stringifyToml, type TomlTable } from "../../lib/device/sota-toml.ts";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { LOCAL_CONF_DIR, underRoot } from "../../lib/device/paths.ts";
import type { Config } from "../config.ts";

/** What following the gateway's tags did: nothing (they are the device's already), adopted them, or kept an owner's override. */
export type TagsFollowed =
  | { changed: false }
  | { changed: true; from: string[]; to: string[]; file: string }
  | { changed: false; overriddenIn: string; gateway: string[] };

const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((t, i) => t === b[i]);

/**
 * Adopts the tags of the gateway's header (`header`: its value, or null when the gateway sent
 * none): sets `cfg.tags` (which a session's x-ats-tags read) and writes them to sota.toml as
 * `pacman.tags`. An empty or unreadable header changes nothing.
 */
export async function followGatewayTags(cfg: Config, header: string | null): Promise<TagsFollowed> {
  const tags = header === null ? [] : readCheckinList(header, isTag);
  if (!tags.length || same(tags, cfg.tags)) return { changed: false };
  const ownerDir = underRoot(cfg.root, LOCAL_CONF_DIR) + sep;
  const origin = cfg.origins["pacman.tags"];
  // The owner's drop-in wins on the device (loaded last: fioup/config.ts loadConfig).
  if (origin?.startsWith(ownerDir)) return { changed: false, overriddenIn: origin, gateway: tags };
  const sotaToml = cfg.sotaToml;
  const text = readFileSync(sotaToml, "utf8").replace(/^\uFEFF+/, "");
  const doc = parseToml(text, sotaToml);
  doc.pacman = { ...((doc.pacman as TomlTable | undefined) ?? {}), tags: tags.join(",") };
  // Registration's header lines kept, an earlier line of ours replaced.
  const head = (text.match(/^(?:#[^\n]*\n)*/)?.[0] ?? "").replace(/^# pacman\.tags set by the gateway .*\n/m, "");
  await writeFileAtomic(sotaToml, `${head}# pacman.tags set by the gateway on ${new Date().toISOString()}\n${stringifyToml(doc)}`);
  const from = cfg.tags;
  cfg.tags = tags;
  return { changed: true, from, to: tags, file: sotaToml };
}
