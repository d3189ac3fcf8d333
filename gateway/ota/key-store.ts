/**
 * The gateway's TUF private keys as files, `<data>/tuf/keys/<role>.json`
 * (mode 0600), so root and targets keys can be moved offline and put back.
 * A rotation stages the new key as `<role>.next.json` before the new root is
 * stored and promotes it after, so a crash in between never loses the key the
 * stored root trusts: whichever of the two files root names is used.
 *
 * @module
 */
import { link, mkdir, rename, rm, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { generateKey, loadKeyFile, saveKeyFile, serializeKey, type TufKeyPair } from "../../lib/tuf/keys.ts";
import type { RoleName } from "../../lib/tuf/metadata.ts";

/** The role's key is not in the keys dir (moved offline) or is not the one root trusts. */
export class SigningKeyUnavailableError extends Error {
  override name = "SigningKeyUnavailableError";
  constructor(role: RoleName, path: string, why: string, options?: ErrorOptions) {
    super(`Cannot sign TUF ${role} metadata with ${path}: ${why}`, options);
  }
}

const isMissing = (e: unknown) => (e as { cause?: NodeJS.ErrnoException })?.cause?.code === "ENOENT";

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
    const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    await writeFile(tmp, serializeKey(key), { mode: 0o600, flag: "wx" });
    await chmod(tmp, 0o600);
    try {
      await link(tmp, path); // fails if another process created it first
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    } finally {
      await rm(tmp, { force: true });
    }
    return loadKeyFile(path);
  }

  /**
   * The key to sign `role` with: the one whose id is among `trustedIds` (the ids root.json lists).
   *
   * @throws {SigningKeyUnavailableError} If neither the key file nor a staged one is trusted.
   */
  async signingKey(role: RoleName, trustedIds: readonly string[]): Promise<TufKeyPair> {
    const path = this.path(role);
    let current: TufKeyPair | undefined;
    try {
      current = await loadKeyFile(path);
      if (trustedIds.includes(current.keyId)) return current;
    } catch (e) {
      if (!isMissing(e)) throw new SigningKeyUnavailableError(role, path, (e as Error).message, { cause: e });
    }
    // A rotation that stored the new root but crashed before promoting the key.
    try {
      const next = await loadKeyFile(this.path(role, true));
      if (trustedIds.includes(next.keyId)) {
        await rename(this.path(role, true), path);
        return next;
      }
    } catch {
      // no staged key
    }
    throw new SigningKeyUnavailableError(
      role,
      path,
      current ? `its key ${current.keyId} is not the ${role} key root.json trusts (${trustedIds.join(", ")})` : "the key file is absent (offline?)",
    );
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
    await rename(this.path(role, true), this.path(role));
  }

  /** Drops a staged key whose rotation failed. */
  async discardNext(role: RoleName): Promise<void> {
    await rm(this.path(role, true), { force: true });
  }
}
