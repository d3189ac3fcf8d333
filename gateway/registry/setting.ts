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

/** What an operator runs to let the fleet's registry change: the next start records its own. */
const FORGET = `DELETE FROM gateway_meta WHERE key = '${REGISTRY_SETTING}'`;

/** A replica started with another registry setting than the one its database records (or a record it cannot read): the setting is not recorded, nothing served. */
export class RegistrySettingMismatchError extends Error {
  override name = "RegistrySettingMismatchError";
}

/** Where the database's record and the replica's setting are read from and written to. */
export interface SettingStore {
  readMeta(key: string): Promise<string | undefined>;
  claimMeta(key: string, value: string): Promise<string>;
}

const idPath = (dir: string) => join(dir, STORAGE_ID_FILE);
const readId = async (dir: string) => (await readTextOrUndefined(idPath(dir)))?.trim() || undefined;

const shownEmbedded = (s: Extract<RegistrySetting, { kind: "embedded" }>) =>
  `the embedded registry in ${s.dir} (${s.flag ? `--registry-dir ${s.dir}` : "no --registry-dir"})`;
const shownExternal = (service: string) => `the external registry "${service}" (--external-registry-service ${service})`;

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
      `Cannot serve ${where.dataDir} with the database ${where.db}: its record of the fleet's registry (gateway_meta ${REGISTRY_SETTING}) cannot be read; stop every replica, run ${FORGET} in that database, and start them all with the registry setting the fleet uses`,
    );
  }
  const refuse = (theirs: string, ours: string, fix: string) =>
    new RegistrySettingMismatchError(
      `Cannot serve ${where.dataDir} with the database ${where.db}: the replicas on it serve ${theirs}, and this one ${ours}. ${fix}; ` +
        `to change the registry of the whole fleet on purpose, stop every replica, run ${FORGET} in that database, and start them all with the new setting (this replica recorded no registry setting and served nothing)`,
    );
  if (recorded.kind === "external") {
    if (setting.kind === "external" && setting.service === recorded.service) return true;
    throw refuse(
      shownExternal(recorded.service),
      setting.kind === "external" ? shownExternal(setting.service) : shownEmbedded(setting),
      `Give every replica the same --external-registry-service ${recorded.service}`,
    );
  }
  const theirs = `the embedded registry in the storage whose ${STORAGE_ID_FILE} holds ${recorded.id} (first served from ${recorded.dir})`;
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
