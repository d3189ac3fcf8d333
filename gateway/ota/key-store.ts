/**
 * The gateway's TUF private keys as files, `<data>/tuf/keys/<role>.json`
 * (mode 0600), so root and targets keys can be moved offline and put back.
 * Any key file in the dir signs for every role whose root.json entry lists its
 * key id, so a role with a threshold above 1 signs online when enough of its
 * key files are present, and not at all when they are absent.
 * A rotation stages the new key as `<role>.next.json` before the new root is
 * stored and promotes it after, so a crash in between never loses the key the
 * stored root trusts: whichever of the two files root names is used.
 * A key another replica rotated arrives through the database (./key-handoff.ts) and is written
 * here by {@link TufKeyStore.adopt}; `.adopted-root` records the root version whose keys were taken.
 *
 * @module
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { renameDurable, writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { generateKey, loadKeyFile, saveKeyFile, serializeKey, type TufKeyPair } from "../../lib/tuf/keys.ts";
import type { RoleName } from "../../lib/tuf/metadata.ts";

/** The role's key is not in the keys dir (moved offline) or is not the one root trusts. */
export class SigningKeyUnavailableError extends Error {
  override name = "SigningKeyUnavailableError";
  constructor(
    readonly role: RoleName,
    path: string,
    why: string,
    options?: ErrorOptions,
  ) {
    super(`Cannot sign TUF ${role} metadata with ${path}: ${why}`, options);
  }
}

/** In the keys dir: the root version whose handed-off keys were taken. Dot files are never read as keys (see held()). */
export const ADOPTED_ROOT_FILE = ".adopted-root";
const ADOPTED = ADOPTED_ROOT_FILE;

const isMissing = (e: unknown) => (e as { code?: string })?.code === "ENOENT"; // loadKeyFile's KeyFileError

export class TufKeyStore {
  constructor(readonly dir: string) {}

  path(role: RoleName, next = false): string {
    return join(this.dir, `${role}${next ? ".next" : ""}.json`);
  }

  /**
   * The role's key for a new repository: the existing file if there is one
   * (a data dir reused with a fresh database), else a new key created
   * exclusively, so two processes initialising at once end with one key.
   */
  async initialKey(role: RoleName): Promise<TufKeyPair> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const path = this.path(role);
    try {
      return await loadKeyFile(path);
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
    const key = generateKey();
    try {
      await writeFileAtomic(path, serializeKey(key), { mode: 0o600, noReplace: true }); // EEXIST if another process created it first
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    return loadKeyFile(path);
  }

  /**
   * Every readable key file in the dir (`*.json`), by key id: `<role>.json`, a staged
   * `<role>.next.json`, or any other name an operator gave a key file (e.g. a second
   * targets key for a threshold of 2). Unreadable files are skipped: they cannot sign.
   */
  async held(): Promise<Map<string, { pair: TufKeyPair; path: string }>> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return new Map();
      throw e;
    }
    const out = new Map<string, { pair: TufKeyPair; path: string }>();
    // Stable keys first, so a key present under both names is used from `<role>.json`.
    names.sort((a, b) => Number(a.endsWith(".next.json")) - Number(b.endsWith(".next.json")) || a.localeCompare(b));
    for (const name of names) {
      if (!name.endsWith(".json") || name.startsWith(".")) continue; // a hidden file (a write in progress, .adopted-root) is no key
      const path = join(this.dir, name);
      try {
        const pair = await loadKeyFile(path);
        if (!out.has(pair.keyId)) out.set(pair.keyId, { pair, path });
      } catch {
        // not a key file, or removed meanwhile
      }
    }
    return out;
  }

  /**
   * The keys to sign `role` with: every held key whose id is among `trustedIds` (the ids
   * root.json lists for the role), at least `threshold` of them.
   *
   * @throws {SigningKeyUnavailableError} If fewer than `threshold` trusted keys are held (moved offline).
   */
  async signingKeys(role: RoleName, trustedIds: readonly string[], threshold = 1): Promise<TufKeyPair[]> {
    const held = await this.held();
    const found = trustedIds.flatMap((id) => {
      const k = held.get(id);
      return k ? [k] : [];
    });
    if (found.length >= threshold && found.length > 0) {
      // A rotation that stored the new root but crashed before promoting the key.
      for (const k of found) {
        if (k.path === this.path(role, true)) {
          await renameDurable(k.path, this.path(role));
          k.path = this.path(role);
        }
      }
      return found.map((k) => k.pair);
    }
    const path = this.path(role);
    const own = [...held.values()].find((k) => k.path === path);
    // held() skips files it cannot read; a damaged key file is not an offline key, so say which.
    const unreadable = own ? undefined : await loadKeyFile(path).then(() => undefined, (e: unknown) => (isMissing(e) ? undefined : (e as Error)));
    const why =
      found.length > 0
        ? `only ${found.length} of the ${threshold} ${role} keys root.json requires are in ${this.dir}`
        : own
          ? `its key ${own.pair.keyId} is not the ${role} key root.json trusts (${trustedIds.join(", ")})`
          : unreadable
            ? `the key file is there but cannot be read (${unreadable.message}); restore it from a backup`
            : trustedIds.length > 1
              ? `none of the ${trustedIds.length} ${role} keys root.json trusts is there (offline?)`
              : `the ${role} key root.json trusts (${trustedIds[0]}) is in none of its files (offline?)`;
    // A trusted key is found by its id in any file of the folder, whatever its name (docs/keys.md): with none
    // there, no one file is missing, so the folder is named (also for several keys, e.g. root 2 of 3).
    const where = found.length === 0 && !own && !unreadable ? this.dir : path;
    throw new SigningKeyUnavailableError(role, where, why, unreadable ? { cause: unreadable } : undefined);
  }

  /** The key to sign `role` with when root requires one signature. @throws {SigningKeyUnavailableError} */
  async signingKey(role: RoleName, trustedIds: readonly string[]): Promise<TufKeyPair> {
    return (await this.signingKeys(role, trustedIds, 1))[0]!;
  }

  /** Deletes the held key files of these key ids (keys no root trusts any more). Returns the paths removed. */
  async forget(keyIds: Iterable<string>): Promise<string[]> {
    const held = await this.held();
    const removed: string[] = [];
    for (const id of keyIds) {
      const k = held.get(id);
      if (!k) continue;
      await rm(k.path, { force: true });
      removed.push(k.path);
    }
    return removed;
  }

  /** The root version whose handed-off keys this dir has taken (`.adopted-root`); 0 before any. */
  async adoptedRoot(): Promise<number> {
    const text = await readFile(join(this.dir, ADOPTED), "utf8").catch(() => "");
    const n = Number(text.trim());
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  }

  /** Records that the keys of root `version` have been taken. */
  async setAdoptedRoot(version: number): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.dir, ADOPTED), `${version}\n`, { mode: 0o600 });
  }

  /**
   * Writes a key another replica made for `role` (trusted by root under `trustedIds`): as
   * `<role>.json`, replacing a key root no longer trusts, as the rotating replica's promotion
   * did; under `<role>-<id>.json` when that file holds a trusted key or cannot be read. Returns
   * the path written.
   */
  async adopt(role: RoleName, pair: TufKeyPair, trustedIds: readonly string[]): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const own = this.path(role);
    const kept = await loadKeyFile(own).then((k) => trustedIds.includes(k.keyId), (e: unknown) => !isMissing(e));
    const path = kept ? join(this.dir, `${role}-${pair.keyId.slice(0, 16)}.json`) : own;
    await saveKeyFile(path, pair);
    return path;
  }

  /** Stages a new key for a rotation (`<role>.next.json`). */
  async stageNext(role: RoleName): Promise<TufKeyPair> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const key = generateKey();
    await saveKeyFile(this.path(role, true), key);
    return key;
  }

  /** Makes the staged key the role's key, once the root trusting it is stored. */
  async promoteNext(role: RoleName): Promise<void> {
    await renameDurable(this.path(role, true), this.path(role));
  }

  /** Drops a staged key whose rotation failed. */
  async discardNext(role: RoleName): Promise<void> {
    await rm(this.path(role, true), { force: true });
  }
}
