/**
 * The bound on the expiry grace a TUF client may be given (lib/tuf/verify-targets.ts), in a
 * file of its own so config readers can check it without loading the TUF client.
 *
 * @module
 */

/** The largest expiry grace a caller may ask for: 30 days. */
export const MAX_EXPIRY_GRACE_SECONDS = 30 * 24 * 3600;
