/**
 * ULIDs for update ids (the events' correlation id, as fioup does): sortable
 * by creation time, so `ORDER BY id` is the order updates happened.
 *
 * @module
 */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A 26-character Crockford base32 ULID: 48-bit ms time + 80 random bits. */
export function ulid(now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const rnd = crypto.getRandomValues(new Uint8Array(16));
  let r = "";
  for (let i = 0; i < 16; i++) r += ALPHABET[rnd[i]! % 32];
  return time + r;
}
