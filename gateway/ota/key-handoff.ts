/**
 * Online TUF keys handed from the replica that made them to the others, through the database
 * they share. `gateway keys rotate` (or a root pushed from the offline ceremony) lands on one
 * replica, which alone then holds the new key file; every other replica would sign with a key
 * root.json no longer trusts (a publish answered 409, a timestamp never re-signed on a stale
 * signer). So the replica offers each new online key to the database, sealed (AES-256-GCM) with a
 * key derived from the factory CA's private key, which every copy of the data dir holds and the
 * database does not: whoever reads the database alone learns nothing. The others take it once,
 * when they first see the root that trusts it (TufRepo.adoptKeys), and write it into their own
 * keys dir. Root keys are never handed off.
 *
 * Other secrets every replica must hold alike, but which a replica makes on first use rather than
 * at the first start (the external registry's token-signing key, registry/jwt.ts), are shared the
 * same way with `claim`: the first replica's value wins, and every replica gets that one.
 *
 * @module
 */
import { createPrivateKey } from "node:crypto";
import { deriveKey, openBytes, sealBytes } from "../../lib/crypto/aead.ts";
import { parseKey, serializeKey, type TufKeyPair } from "../../lib/tuf/keys.ts";

/** Where sealed keys are kept: the store's `gateway_meta` (claimMeta/readMeta). */
export interface HandoffStore {
  claimMeta(key: string, value: string): Promise<string>;
  readMeta(key: string): Promise<string | undefined>;
}

/** A key handed off that this data dir's CA cannot open: the database belongs to another CA, or was tampered with. */
export class KeyHandoffError extends Error {
  override name = "KeyHandoffError";
}

const PURPOSE = "ota tuf key handoff v1";
const entry = (keyId: string) => `tuf-key:${keyId}`;
const secretEntry = (name: string) => `secret:${name}`;

export class KeyHandoff {
  readonly #key: Buffer;

  /**
   * `secret`: the factory CA's private key PEM (the same in every copy of the data dir). The
   * sealing key comes from the key itself (its PKCS#8 form), so a copy whose PEM was re-encoded
   * still agrees.
   */
  constructor(
    secret: string,
    readonly store: HandoffStore,
  ) {
    this.#key = deriveKey(createPrivateKey(secret).export({ type: "pkcs8", format: "der" }), PURPOSE);
  }

  /** Offers a key to the other replicas (before the root that trusts it is stored). */
  async offer(pair: TufKeyPair): Promise<void> {
    await this.store.claimMeta(entry(pair.keyId), `v1.${sealBytes(this.#key, serializeKey(pair), pair.keyId).toString("base64url")}`);
  }

  /**
   * Shares the secret `value` under `name`: the value the first replica claimed wins, and is what
   * this returns (opened), to that replica and every other.
   *
   * @throws {KeyHandoffError} If the stored value does not open with this CA.
   */
  async claim(name: string, value: string): Promise<string> {
    const stored = await this.store.claimMeta(secretEntry(name), `v1.${sealBytes(this.#key, Buffer.from(value, "utf8"), name).toString("base64url")}`);
    try {
      if (!stored.startsWith("v1.")) throw new Error("unknown format");
      return openBytes(this.#key, Buffer.from(stored.slice(3), "base64url"), name).toString("utf8");
    } catch (cause) {
      throw new KeyHandoffError(`Cannot take the shared ${name} from the database: it does not open with this data dir's CA key (${(cause as Error).message}); is this replica's data dir a copy of the others'?`, { cause });
    }
  }

  /**
   * The key with this id if a replica offered it, else undefined.
   *
   * @throws {KeyHandoffError} If it is there but does not open with this CA, or is not that key.
   */
  async take(keyId: string): Promise<TufKeyPair | undefined> {
    const sealed = await this.store.readMeta(entry(keyId));
    if (sealed === undefined) return undefined;
    try {
      if (!sealed.startsWith("v1.")) throw new Error("unknown format");
      const pair = parseKey(openBytes(this.#key, Buffer.from(sealed.slice(3), "base64url"), keyId).toString("utf8"), `handed-off key ${keyId}`);
      if (pair.keyId !== keyId) throw new Error(`it holds key ${pair.keyId}`);
      return pair;
    } catch (cause) {
      throw new KeyHandoffError(
        `Cannot take TUF key ${keyId} from the database: it does not open with this data dir's CA key (${(cause as Error).message}); copy the key file from the replica that rotated it`,
        { cause },
      );
    }
  }
}
