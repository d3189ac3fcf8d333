/**
 * Which registry the replicas on one PostgreSQL database serve, recorded in that database by the
 * first start, so that a replica started with another is refused instead of serving a fleet
 * split in two: one replica's blobs 404 on another (two embedded registries on different
 * storage), or `/token?service=NAME` answered 200 by one replica and 400 by the next (one with
 * `--external-registry-service NAME`, one without).
 *
 * An external registry is known by its service name. The embedded registry's storage cannot be
 * known by its path, which may differ per host for one shared mount, so the first start writes a
 * random id into the storage ({@link STORAGE_ID_FILE}) and records the same id: a replica whose
 * --registry-dir lacks the file, or holds another id, serves another storage (an empty new
 * folder, a mount point whose mount failed). A copy of the storage carries the id: a copy per
 * replica is not told from a shared one.
 *
 * The registry changes on purpose with `serve --registry-change` ({@link changeRegistrySetting}):
 * every other replica stopped, the start that brings the new setting replaces the record, so no
 * moment lets a replica with the old setting record it again.
 *
 * Only PostgreSQL is checked: a SQLite database has one gateway, which may move its registry.
 *
 * @module
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { readTextOrUndefined } from "./_fs.ts";
import { STORAGE_ID_FILE } from "./storage.ts";

/** Serve's registry flags as the replicas must share them. */
export type RegistrySetting =
  | { kind: "external"; service: string }
  /** `dir` is this replica's path to the storage; `flag` whether --registry-dir gave it (else DIR/registry). */
  | { kind: "embedded"; dir: string; flag: boolean };

/** What the database records: the embedded storage by its id (and the first replica's path, for messages). */
type Recorded = { kind: "external"; service: string } | { kind: "embedded"; id: string; dir: string };

/** The gateway_meta key of the record (beside ca_fingerprint, CA_FINGERPRINT_META in gateway/store/open.ts). */
export const REGISTRY_SETTING = "registry_setting";

/** How an operator changes the fleet's registry: every replica stopped, one start with the new setting records it. */
const CHANGE = "stop every replica, start one with the new setting and --registry-change, then the others with that setting";

/** A replica started with another registry setting than the one its database records (or a record it cannot read): the setting is not recorded, nothing served. */
export class RegistrySettingMismatchError extends Error {
  override name = "RegistrySettingMismatchError";
}

/** Where the database's record and the replica's setting are read from and written to. */
export interface SettingStore {
  readMeta(key: string): Promise<string | undefined>;
  claimMeta(key: string, value: string): Promise<string>;
  forgetMeta(key: string, value: string): Promise<boolean>;
}

const idPath = (dir: string) => join(dir, STORAGE_ID_FILE);
const readId = async (dir: string) => (await readTextOrUndefined(idPath(dir)))?.trim() || undefined;

const shownEmbedded = (s: Extract<RegistrySetting, { kind: "embedded" }>) =>
  `the embedded registry in ${s.dir} (${s.flag ? `--registry-dir ${s.dir}` : "no --registry-dir"})`;
const shownExternal = (service: string) => `the external registry "${service}" (--external-registry-service ${service})`;

const shownRecorded = (r: Recorded) =>
  r.kind === "external" ? shownExternal(r.service) : `the embedded registry in the storage whose ${STORAGE_ID_FILE} holds ${r.id} (first served from ${r.dir})`;

/**
 * Refuses `setting` when `store` records another; true when it records this one, false when it
 * records none yet ({@link recordRegistrySetting} then records it, once the storage is made).
 * Writes nothing.
 *
 * @param where The data dir and the database as the refusal names them (the password masked).
 * @throws {RegistrySettingMismatchError}
 */
export async function checkRegistrySetting(store: SettingStore, setting: RegistrySetting, where: { dataDir: string; db: string }): Promise<boolean> {
  const text = await store.readMeta(REGISTRY_SETTING);
  if (text === undefined) return false;
  let recorded: Recorded;
  try {
    recorded = JSON.parse(text) as Recorded;
    if (recorded?.kind !== "external" && recorded?.kind !== "embedded") throw new Error("no kind");
  } catch {
    throw new RegistrySettingMismatchError(
      `Cannot serve ${where.dataDir} with the database ${where.db}: its record of the fleet's registry (gateway_meta ${REGISTRY_SETTING}) cannot be read; ${CHANGE} (the registry setting the fleet uses)`,
    );
  }
  const refuse = (theirs: string, ours: string, fix: string) =>
    new RegistrySettingMismatchError(
      `Cannot serve ${where.dataDir} with the database ${where.db}: the replicas on it serve ${theirs}, and this one ${ours}. ${fix}; ` +
        `to change the registry of the whole fleet on purpose, ${CHANGE} (this replica recorded no registry setting and served nothing)`,
    );
  if (recorded.kind === "external") {
    if (setting.kind === "external" && setting.service === recorded.service) return true;
    throw refuse(
      shownRecorded(recorded),
      setting.kind === "external" ? shownExternal(setting.service) : shownEmbedded(setting),
      `Give every replica the same --external-registry-service ${recorded.service}`,
    );
  }
  const theirs = shownRecorded(recorded);
  if (setting.kind === "external") throw refuse(theirs, shownExternal(setting.service), "Start every replica without --external-registry-service");
  const id = await readId(setting.dir);
  if (id === recorded.id) return true;
  throw refuse(
    theirs,
    `${shownEmbedded(setting)}, another storage: ${id ? `its ${STORAGE_ID_FILE} holds ${id}` : `it has no ${STORAGE_ID_FILE}`}, so a blob pushed through one replica would be missing on the other`,
    `Give every replica that same storage as its --registry-dir (a shared filesystem: the path may differ per host, the storage may not)`,
  );
}

/**
 * Records `setting` as the one every replica on `store` must have, the first start's: for the
 * embedded registry, the id in its storage (written there first if missing; made with no
 * replace, so replicas starting together on one new storage agree on one). Another replica that
 * recorded another setting meanwhile wins: this one is refused, and an id it wrote is removed.
 *
 * @throws {RegistrySettingMismatchError}
 */
export async function recordRegistrySetting(
  store: SettingStore,
  setting: RegistrySetting,
  where: { dataDir: string; db: string },
  log: (line: string) => void,
): Promise<void> {
  let written: { file: string; id: string } | undefined; // the id file this start wrote, to remove if refused
  let record: Recorded;
  if (setting.kind === "external") record = { kind: "external", service: setting.service };
  else {
    const file = idPath(setting.dir);
    let id = await readId(setting.dir);
    if (id === undefined) {
      const mine = crypto.randomUUID();
      try {
        await writeFileAtomic(file, `${mine}\n`, { noReplace: true });
        written = { file, id: (id = mine) };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        id = await readId(setting.dir); // another replica's first start, at the same moment
        if (id === undefined) throw new Error(`Cannot use ${file}: it is empty (the gateway writes an id there): remove it and start again`);
      }
    }
    record = { kind: "embedded", id, dir: setting.dir };
  }
  const text = JSON.stringify(record);
  if ((await store.claimMeta(REGISTRY_SETTING, text)) === text) {
    log(
      record.kind === "external"
        ? `gateway: recorded in the database that its replicas serve ${shownExternal(record.service)}; a replica started otherwise is refused`
        : `gateway: recorded in the database that its replicas serve the embedded registry in the storage whose ${idPath(record.dir)} holds ${record.id}; ` +
            "a replica whose --registry-dir is another storage is refused (keep that file)",
    );
    return;
  }
  // Another replica recorded first: the same storage under another path is still this one.
  try {
    if (!(await checkRegistrySetting(store, setting, where))) throw new Error(`Cannot read the database's ${REGISTRY_SETTING} just recorded`);
  } catch (e) {
    if (written && (await readTextOrUndefined(written.file))?.trim() === written.id) await rm(written.file, { force: true });
    throw e;
  }
}

/**
 * `serve --registry-change`: the fleet's registry changes on purpose (to an external registry, to
 * new storage when the old is lost). When the database records another setting (or one it cannot
 * read), the record is given up so that this start records its own, as a first start does; the
 * start then serves only with the new setting, and every other replica is refused until it has it.
 * Refused while another replica serves (`othersServing`): it would go on serving the old registry
 * beside this one, the split the record prevents.
 *
 * What the devices see: the images they run stay on them (their blobs are in their own store), but
 * targets published before the change name images that the new registry may not hold, so a device
 * that lacks one (new, or behind) fails its fetch until they are pushed there again. The log says so.
 *
 * @returns As {@link checkRegistrySetting}: true when the record is this setting already, false
 *   when none is recorded now ({@link recordRegistrySetting} records it).
 * @throws {RegistrySettingMismatchError} If another replica serves, or the record changed meanwhile.
 */
export async function changeRegistrySetting(
  store: SettingStore,
  setting: RegistrySetting,
  where: { dataDir: string; db: string },
  othersServing: () => Promise<boolean>,
  log: (line: string) => void,
): Promise<boolean> {
  const text = await store.readMeta(REGISTRY_SETTING);
  if (text === undefined) return false;
  try {
    if (await checkRegistrySetting(store, setting, where)) {
      log("gateway: --registry-change: the database records this registry setting already: nothing changed");
      return true;
    }
  } catch (e) {
    if (!(e instanceof RegistrySettingMismatchError)) throw e;
  }
  const was = (() => {
    try {
      return shownRecorded(JSON.parse(text) as Recorded);
    } catch {
      return "a record that cannot be read";
    }
  })();
  const cannot = `Cannot change the fleet's registry with ${where.dataDir} on the database ${where.db}`;
  if (await othersServing())
    throw new RegistrySettingMismatchError(
      `${cannot}: another replica is serving it (it holds the signer lease) with ${was}; stop every replica first, then start this one with --registry-change. Nothing was changed`,
    );
  if (!(await store.forgetMeta(REGISTRY_SETTING, text)))
    throw new RegistrySettingMismatchError(`${cannot}: the record changed while this start read it (another replica starting?); stop every replica and start again. Nothing was changed`);
  log(
    `gateway: --registry-change: the fleet's registry was ${was}; this start records its own. Devices keep the images they run; ` +
      "targets published before name images the new registry may not hold: push them there again (gateway publish) before a device that lacks them updates, and start every other replica with the new setting",
  );
  return false;
}
