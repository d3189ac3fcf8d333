/**
 * The dashboard's sign-in session: a stateless cookie, so any replica can read
 * it. The cookie carries the user's own API token encrypted (AES-256-GCM) and
 * is signed (HMAC-SHA256) with keys derived (HKDF) from one random secret kept
 * in the database (`gateway_meta`), which every replica sharing it reads. The
 * pages call the admin API with that token, so the API's role checks are the
 * only authority. Each action carries a CSRF token bound to the session id.
 *
 * @module
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { deriveKey, openBytes, sealBytes } from "../../lib/crypto/aead.ts";
import type { ApiRole } from "../../lib/api/admin.ts";
import type { Gateway } from "../env.ts";

/** The cookie's name: `__Host-` makes browsers insist on Secure, Path=/ and no Domain. */
export const SESSION_COOKIE = "__Host-ota_ui";
/** How long a sign-in lasts. */
export const SESSION_SECONDS = 8 * 3600;
/**
 * How long the browser keeps the cookie: a day beyond the session, so a user who comes back to a
 * session that ran out is told so (see {@link sessionRanOut}) instead of landing on sign-in with
 * no word. Past its expiry the cookie opens nothing (the expiry is inside the signed value).
 */
export const SESSION_COOKIE_SECONDS = SESSION_SECONDS + 24 * 3600;

export interface Session {
  /** The API token the user signed in with. */
  token: string;
  role: ApiRole;
  /** Random id the CSRF token is bound to. */
  sid: string;
  /** Expiry, ms since the epoch. */
  exp: number;
}

interface Keys {
  enc: Buffer;
  mac: Buffer;
}

const keysByGateway = new WeakMap<Gateway, Promise<Keys>>();

/** The session keys: from a secret made once per database (the first replica to ask stores it). */
function keysOf(gw: Gateway): Promise<Keys> {
  let keys = keysByGateway.get(gw);
  if (!keys) {
    keys = gw.store.claimMeta("ui-session-secret", randomBytes(32).toString("base64")).then((secret) => {
      const ikm = Buffer.from(secret, "base64");
      return { enc: deriveKey(ikm, "ota dashboard session encryption"), mac: deriveKey(ikm, "ota dashboard session signature") };
    });
    keysByGateway.set(gw, keys);
  }
  return keys;
}

const b64 = (b: Buffer) => b.toString("base64url");
const mac = (key: Buffer, text: string) => createHmac("sha256", key).update(text).digest();

/** Encrypts and signs a JSON value for a cookie (session, one-time notices). */
export async function seal(gw: Gateway, value: unknown): Promise<string> {
  const { enc, mac: macKey } = await keysOf(gw);
  const payload = `v1.${b64(sealBytes(enc, JSON.stringify(value)))}`;
  return `${payload}.${b64(mac(macKey, payload))}`;
}

/** The value {@link seal} made, or undefined when missing, tampered with or sealed by another database's key. */
export async function unseal<T>(gw: Gateway, value: string | undefined): Promise<T | undefined> {
  if (!value) return undefined;
  const dot = value.lastIndexOf(".");
  const payload = value.slice(0, dot);
  if (dot < 0 || !payload.startsWith("v1.")) return undefined;
  const { enc, mac: macKey } = await keysOf(gw);
  const given = Buffer.from(value.slice(dot + 1), "base64url");
  const want = mac(macKey, payload);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
  try {
    return JSON.parse(openBytes(enc, Buffer.from(payload.slice(3), "base64url")).toString("utf8")) as T;
  } catch {
    return undefined;
  }
}

/** The cookie value for a new session of `token`. */
export async function sealSession(gw: Gateway, token: string, role: ApiRole, now = Date.now()): Promise<{ value: string; session: Session }> {
  const session: Session = { token, role, sid: b64(randomBytes(16)), exp: now + SESSION_SECONDS * 1000 };
  return { value: await seal(gw, session), session };
}

/** The session a cookie value holds, or undefined (missing, tampered with, from another database, expired). */
export async function openSession(gw: Gateway, value: string | undefined, now = Date.now()): Promise<Session | undefined> {
  const s = await unseal<Session>(gw, value);
  return s && typeof s.exp === "number" && s.exp > now ? s : undefined;
}

/** True when the cookie holds a genuine session of this database that has expired: it ran its 8 hours. */
export async function sessionRanOut(gw: Gateway, value: string | undefined, now = Date.now()): Promise<boolean> {
  const s = await unseal<Session>(gw, value);
  return !!s && typeof s.exp === "number" && s.exp <= now;
}

/** The CSRF token of a session: an HMAC of its id, so it needs no storage. */
export async function csrfToken(gw: Gateway, s: Session): Promise<string> {
  return b64(mac((await keysOf(gw)).mac, `csrf.${s.sid}`));
}

/** True when `given` is the session's CSRF token. */
export async function csrfValid(gw: Gateway, s: Session, given: string | undefined): Promise<boolean> {
  if (!given) return false;
  const want = Buffer.from(await csrfToken(gw, s));
  const got = Buffer.from(given);
  return got.length === want.length && timingSafeEqual(got, want);
}
