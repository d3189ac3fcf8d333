/**
 * The offline side of a root change: draft the next root.json from the current
 * one, add signatures to it one key at a time (each key holder on their own
 * machine), and count whose signatures it carries. TUF accepts a new root only
 * when it is signed by a threshold of the previous root's root keys and by a
 * threshold of its own, so {@link rootSignatureStatus} reports both. Nothing
 * here does I/O: the `gateway keys` commands read and write the files.
 *
 * @module
 */
import { Metadata, Root } from "@tufjs/models";
import { modelKey, signerFor, type TufKeyPair, type TufPublicKeyWithId } from "./keys.ts";
import { parseMetadata, ROLE_NAMES, serializeMetadata, type RoleName } from "./metadata.ts";

/** A draft or its changes are not a valid root. */
export class RootDraftError extends Error {
  override name = "RootDraftError";
  constructor(why: string, options?: ErrorOptions) {
    super(`Cannot draft root.json: ${why}`, options);
  }
}

/** A threshold no set of the role's keys can meet: a bad value asked for, not a bad current root. */
export class RootThresholdError extends RootDraftError {
  override name = "RootThresholdError";
  constructor(
    readonly role: string,
    readonly threshold: number,
    /** How many keys the role has in the draft. */
    readonly keys: number,
  ) {
    super(`the ${role} threshold ${threshold} must be between 1 and its ${keys} key(s)`);
  }
}

/** A key asked to sign a root draft is not one of the root keys that count for it. */
export class NotARootKeyError extends Error {
  override name = "NotARootKeyError";
  constructor(keyId: string, version: number) {
    super(`Cannot sign root.json v${version} with key ${keyId}: it is not a root key of that version or of the previous one`);
  }
}

/** What changes from the current root to the next. */
export interface RootChanges {
  /** Replaces the listed roles' keys (the others keep theirs). */
  keys?: Partial<Record<RoleName, TufPublicKeyWithId[]>>;
  /** New thresholds (default: unchanged, or 1 for a role whose keys change). */
  thresholds?: Partial<Record<RoleName, number>>;
  /** TUF expiry of the new version (`2027-01-01T00:00:00Z`). */
  expires: string;
}

/**
 * The next root version, unsigned: the current root with the changes applied, keys no role
 * lists any more dropped.
 *
 * @example
 * ```ts
 * const draft = draftNextRoot(currentBytes, { keys: { root: [a, b, c] }, thresholds: { root: 2 }, expires });
 * ```
 * @throws {RootDraftError} If the current bytes are not root metadata; {@link RootThresholdError} if a threshold exceeds its keys.
 */
export function draftNextRoot(current: Uint8Array | string, changes: RootChanges): Uint8Array {
  let cur: Metadata<Root>;
  try {
    cur = parseMetadata("root", current);
  } catch (cause) {
    throw new RootDraftError("the current root is not root metadata", { cause });
  }
  const json = structuredClone(cur.signed.toJSON()) as {
    version: number;
    expires: string;
    keys: Record<string, unknown>;
    roles: Record<string, { keyids: string[]; threshold: number }>;
  };
  json.version = cur.signed.version + 1;
  json.expires = changes.expires;
  for (const role of ROLE_NAMES) {
    const keys = changes.keys?.[role];
    if (keys) {
      const ids = [...new Set(keys.map((k) => k.keyId))];
      if (ids.length === 0) throw new RootDraftError(`the ${role} role needs at least one key`);
      json.roles[role] = { keyids: ids, threshold: changes.thresholds?.[role] ?? 1 };
      for (const k of keys) json.keys[k.keyId] = modelKey(k).toJSON();
    } else if (changes.thresholds?.[role] !== undefined) {
      json.roles[role] = { ...json.roles[role]!, threshold: changes.thresholds[role]! };
    }
    const r = json.roles[role]!;
    if (!Number.isSafeInteger(r.threshold) || r.threshold < 1 || r.threshold > r.keyids.length)
      throw new RootThresholdError(role, r.threshold, r.keyids.length);
  }
  const used = new Set(Object.values(json.roles).flatMap((r) => r.keyids));
  for (const id of Object.keys(json.keys)) if (!used.has(id)) delete json.keys[id];
  let root: Root;
  try {
    root = Root.fromJSON(json as unknown as Parameters<typeof Root.fromJSON>[0]);
  } catch (cause) {
    throw new RootDraftError("the result is not valid root metadata", { cause });
  }
  return serializeMetadata(new Metadata(root));
}

/**
 * Adds `key`'s signature to a root draft (replacing an earlier one by the same key).
 * The key must be a root key of the draft or, when given, of the previous root.
 *
 * @example
 * ```ts
 * const signed = signRoot(draftBytes, await loadKeyFile("/media/usb/root-1.json"), previousBytes);
 * ```
 * @throws {NotARootKeyError} If the key counts for neither root.
 */
export function signRoot(draft: Uint8Array | string, key: TufKeyPair, previous?: Uint8Array | string): Uint8Array {
  const md = parseMetadata("root", draft);
  const prev = previous === undefined ? undefined : parseMetadata("root", previous);
  const counts = [md, ...(prev ? [prev] : [])].some((r) => r.signed.roles.root?.keyIDs.includes(key.keyId));
  if (!counts) throw new NotARootKeyError(key.keyId, md.signed.version);
  md.sign(signerFor(key));
  return serializeMetadata(md);
}

/** Valid signatures on a root draft from one root's root keys. */
export interface ThresholdStatus {
  /** Which root's keys: the draft's own ("new") or the previous version's ("previous"). */
  of: "new" | "previous";
  threshold: number;
  /** Key ids of that root's root role with a valid signature on the draft. */
  signed: string[];
  /** Key ids of that root's root role still unsigned. */
  unsigned: string[];
  met: boolean;
}

/**
 * Counts the draft's valid signatures against its own root keys and, when given, the previous root's.
 *
 * @example
 * ```ts
 * rootSignatureStatus(signedBytes, previousBytes).every((s) => s.met); // ready to install
 * ```
 */
export function rootSignatureStatus(draft: Uint8Array | string, previous?: Uint8Array | string): ThresholdStatus[] {
  const md = parseMetadata("root", draft);
  const of = (which: "new" | "previous", root: Root): ThresholdStatus => {
    const role = root.roles.root!;
    const signed = role.keyIDs.filter((id) => {
      try {
        root.keys[id]?.verifySignature(md as unknown as Metadata<Root>);
        return root.keys[id] !== undefined;
      } catch {
        return false;
      }
    });
    return { of: which, threshold: role.threshold, signed, unsigned: role.keyIDs.filter((id) => !signed.includes(id)), met: signed.length >= role.threshold };
  };
  return [of("new", md.signed), ...(previous === undefined ? [] : [of("previous", parseMetadata("root", previous).signed)])];
}
