/**
 * Authenticated, streaming encryption of a backup. A backup holds the factory CA key and the
 * TUF signing keys, so it is never written in the clear; and it can be gigabytes (registry
 * blobs), so it is sealed in records of at most 1 MiB instead of being held in memory.
 *
 * Format: one header line `OTA-BACKUP 1 <base64url JSON>\n`, then records, each a 4-byte
 * big-endian plaintext length, the AES-256-GCM ciphertext and its 16-byte tag. The nonce is a
 * random 4-byte prefix and the record's 8-byte counter (never reused under one key, since every
 * backup draws a fresh salt or ephemeral key), and each record's additional data says whether
 * it is the last, so a file cut short, reordered or spliced fails to open instead of restoring
 * a part. The key comes from a passphrase (scrypt) or from an X25519 recipient key (ephemeral
 * ECDH + HKDF), so the machine that makes backups need not be able to read them.
 *
 * @module
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  scrypt,
  type KeyObject,
} from "node:crypto";
import { promisify } from "node:util";

const MAGIC = "OTA-BACKUP 1 ";

/** Whether `head`, a file's first bytes, begins as a sealed backup does (its header line). */
export const startsAsBackup = (head: Uint8Array): boolean => Buffer.from(head).toString("latin1").startsWith(MAGIC);
const RECORD = 1 << 20;
const TAG = 16;
const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 << 20 } as const;
const scryptAsync = promisify(scrypt) as (pw: string, salt: Buffer, len: number, o: typeof SCRYPT) => Promise<Buffer>;

/** How a backup's key is obtained: a passphrase, or an X25519 key pair (public to seal, private to open). */
export type SealSecret = { passphrase: string } | { recipientPem: string };
export type OpenSecret = { passphrase: string } | { identityPem: string };

interface Header {
  kdf: { name: "scrypt"; salt: string; N: number; r: number; p: number } | { name: "x25519"; ephemeral: string; salt: string };
  nonce: string;
}

/** The backup cannot be opened: wrong key, or a file that was changed, cut short or is not a backup. */
export class BackupUnreadableError extends Error {
  override name = "BackupUnreadableError";
}

/** Seals `plain` (any chunking) into the backup format. */
export async function* seal(plain: AsyncIterable<Uint8Array>, secret: SealSecret): AsyncGenerator<Uint8Array> {
  const salt = randomBytes(16);
  let key: Buffer;
  let kdf: Header["kdf"];
  if ("passphrase" in secret) {
    if (!secret.passphrase) throw new BackupUnreadableError("Cannot seal a backup with an empty passphrase");
    key = await scryptAsync(secret.passphrase, salt, 32, SCRYPT);
    kdf = { name: "scrypt", salt: salt.toString("base64url"), N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p };
  } else {
    const recipient = named("the recipient key", () => recipientKey(secret.recipientPem));
    const eph = generateKeyPairSync("x25519");
    key = deriveKey(diffieHellman({ privateKey: eph.privateKey, publicKey: recipient }), salt);
    const ephemeral = eph.publicKey.export({ type: "spki", format: "der" }).toString("base64url");
    kdf = { name: "x25519", ephemeral, salt: salt.toString("base64url") };
  }
  const prefix = randomBytes(4);
  const header: Header = { kdf, nonce: prefix.toString("base64url") };
  yield Buffer.from(`${MAGIC}${Buffer.from(JSON.stringify(header)).toString("base64url")}\n`);

  let counter = 0n;
  const record = (chunk: Uint8Array, last: boolean) => {
    const c = createCipheriv("aes-256-gcm", key, nonceOf(prefix, counter++));
    c.setAAD(Buffer.from(last ? "last" : "more"));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(chunk.length);
    return Buffer.concat([len, c.update(chunk), c.final(), c.getAuthTag()]);
  };
  let pending: Buffer[] = [];
  let size = 0;
  for await (const piece of plain) {
    pending.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
    size += piece.byteLength;
    while (size >= RECORD) {
      const all = Buffer.concat(pending);
      yield record(all.subarray(0, RECORD), false);
      pending = [all.subarray(RECORD)];
      size = all.length - RECORD;
    }
  }
  yield record(Buffer.concat(pending), true);
}

/** `read()`'s key, its error saying which key it is about. */
function named(what: string, read: () => KeyObject): KeyObject {
  try {
    return read();
  } catch (e) {
    throw new BackupUnreadableError(`Cannot use ${what}: ${(e as Error).message}`);
  }
}

/** Opens a sealed backup, yielding its plaintext; throws BackupUnreadableError on any mismatch. */
export async function* unseal(sealed: AsyncIterable<Uint8Array>, secret: OpenSecret): AsyncGenerator<Uint8Array> {
  const input = new ByteReader(sealed);
  const line = await input.line(4096);
  // The file ends inside a line that begins as the header does: a backup cut short (a copy that
  // stopped early), not some other file, whose error would send the user looking for another one.
  if (line === undefined && input.ended && startsAsBackup(input.held)) throw new BackupUnreadableError("The backup is cut short in its header");
  if (!line?.startsWith(MAGIC)) throw new BackupUnreadableError("Not a gateway backup (no OTA-BACKUP header)");
  let header: Header;
  try {
    header = JSON.parse(Buffer.from(line.slice(MAGIC.length), "base64url").toString("utf8")) as Header;
  } catch {
    throw new BackupUnreadableError("Not a gateway backup (unreadable header)");
  }
  const key = await keyFor(header, secret);
  const prefix = Buffer.from(header.nonce, "base64url");
  let counter = 0n;
  for (;;) {
    const lenBytes = await input.exactly(4);
    if (!lenBytes) throw new BackupUnreadableError("The backup is cut short: its last record is missing");
    const len = lenBytes.readUInt32BE(0);
    if (len > RECORD) throw new BackupUnreadableError("The backup is damaged: a record is larger than the format allows");
    const body = await input.exactly(len + TAG);
    if (!body) throw new BackupUnreadableError("The backup is cut short in the middle of a record");
    const nonce = nonceOf(prefix, counter++);
    const plain = tryOpen(key, nonce, body, "more") ?? tryOpen(key, nonce, body, "last");
    if (!plain) {
      throw new BackupUnreadableError(
        counter === 1n ? "Cannot open the backup: wrong passphrase or key, or the file was changed" : "The backup was changed or damaged (a record fails its check)",
      );
    }
    if (plain.data.length) yield plain.data;
    if (plain.last) {
      if (await input.exactly(1)) throw new BackupUnreadableError("The backup has data after its last record");
      return;
    }
  }
}

/** Makes an X25519 key pair for `--recipient` (public) and `--identity` (private, keep it offline). */
export function newRecipientKeyPair(): { publicPem: string; privatePem: string } {
  const kp = generateKeyPairSync("x25519");
  return {
    publicPem: kp.publicKey.export({ type: "spki", format: "pem" }).toString(),
    privatePem: kp.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

function tryOpen(key: Buffer, nonce: Buffer, body: Buffer, aad: "more" | "last") {
  try {
    const d = createDecipheriv("aes-256-gcm", key, nonce);
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(body.subarray(body.length - TAG));
    const data = Buffer.concat([d.update(body.subarray(0, body.length - TAG)), d.final()]);
    return { data, last: aad === "last" };
  } catch {
    return undefined;
  }
}

async function keyFor(header: Header, secret: OpenSecret): Promise<Buffer> {
  const salt = Buffer.from(header.kdf.salt, "base64url");
  if (header.kdf.name === "scrypt") {
    if (!("passphrase" in secret)) throw new BackupUnreadableError("This backup was sealed with a passphrase: give the passphrase");
    const { N, r, p } = header.kdf;
    if (N !== SCRYPT.N || r !== SCRYPT.r || p !== SCRYPT.p) throw new BackupUnreadableError("Unsupported key derivation parameters in the backup header");
    return scryptAsync(secret.passphrase, salt, 32, SCRYPT);
  }
  if (header.kdf.name === "x25519") {
    if (!("identityPem" in secret)) throw new BackupUnreadableError("This backup was sealed for a recipient key: give the matching private key (--identity)");
    const priv = named("the identity key", () => identityKey(secret.identityPem));
    const eph = createPublicKey({ key: Buffer.from(header.kdf.ephemeral, "base64url"), format: "der", type: "spki" });
    return deriveKey(diffieHellman({ privateKey: priv, publicKey: eph }), salt);
  }
  throw new BackupUnreadableError("Unsupported key derivation in the backup header");
}

/** A PEM private key, in any of the forms PEM has for one (encrypted too). */
export function isPrivateKeyPem(pem: string): boolean {
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(pem)) return true;
  try {
    createPrivateKey(pem);
    return true;
  } catch {
    return false;
  }
}

/**
 * The X25519 public key a backup is sealed for. Its errors say what the file is instead (a private
 * key, not a key at all, another kind of key), in words, without OpenSSL's codes.
 *
 * @throws {BackupUnreadableError} If `pem` is not an X25519 public key.
 */
export function recipientKey(pem: string): KeyObject {
  // createPublicKey takes a private key too (and derives its public half): a sealing host must not hold one.
  if (isPrivateKeyPem(pem)) throw new BackupUnreadableError("it is a private key: seal for the public key (PREFIX.pub), keep the private one offline");
  let k: KeyObject;
  try {
    k = createPublicKey(pem);
  } catch {
    throw new BackupUnreadableError("it is not a PEM public key (give the PREFIX.pub that gateway backup keygen wrote)");
  }
  if (k.asymmetricKeyType !== "x25519") throw new BackupUnreadableError(`it is an ${k.asymmetricKeyType} public key, not the X25519 key gateway backup keygen makes`);
  return k;
}

/**
 * The X25519 private key that opens backups sealed for its public half.
 *
 * @throws {BackupUnreadableError} If `pem` is not an X25519 private key (e.g. the .pub given in its place).
 */
export function identityKey(pem: string): KeyObject {
  let k: KeyObject;
  try {
    k = createPrivateKey(pem);
  } catch {
    const publicToo = (() => {
      try {
        return !!createPublicKey(pem);
      } catch {
        return false;
      }
    })();
    throw new BackupUnreadableError(
      publicToo
        ? "it is a public key: give the private key (the PREFIX.key that gateway backup keygen wrote beside PREFIX.pub)"
        : "it is not a PEM private key (give the PREFIX.key that gateway backup keygen wrote)",
    );
  }
  if (k.asymmetricKeyType !== "x25519") throw new BackupUnreadableError(`it is an ${k.asymmetricKeyType} private key, not the X25519 key gateway backup keygen makes`);
  return k;
}

const deriveKey = (shared: Buffer, salt: Buffer) => Buffer.from(hkdfSync("sha256", shared, salt, "ota-gateway-backup v1", 32));

function nonceOf(prefix: Buffer, counter: bigint): Buffer {
  const n = Buffer.alloc(12);
  prefix.copy(n, 0);
  n.writeBigUInt64BE(counter, 4);
  return n;
}

/** Reads exact byte counts from an async iterable of chunks. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  private it: AsyncIterator<Uint8Array>;
  constructor(src: AsyncIterable<Uint8Array>) {
    this.it = src[Symbol.asyncIterator]();
  }
  /** Whether the input has ended (what is left is in {@link held}). */
  get ended(): boolean {
    return this.done;
  }
  /** The bytes read and not yet taken. */
  get held(): Buffer {
    return this.buf;
  }
  private async fill(n: number): Promise<boolean> {
    const parts = [this.buf];
    let have = this.buf.length;
    while (have < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else {
        parts.push(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength));
        have += r.value.byteLength;
      }
    }
    this.buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    return this.buf.length >= n;
  }
  async exactly(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) return undefined;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  async line(max: number): Promise<string | undefined> {
    for (let want = 64; ; want *= 2) {
      await this.fill(Math.min(want, max));
      const nl = this.buf.indexOf(10);
      if (nl >= 0) {
        const s = this.buf.subarray(0, nl).toString("utf8");
        this.buf = this.buf.subarray(nl + 1);
        return s;
      }
      if (want >= max || this.done) return undefined;
    }
  }
}
