/**
 * A URL as a log line or a message may show it: a password in it masked, so neither a journal
 * nor an error report carries it (a broker's mqtt://user:pw@host, a database's postgres://...).
 * Works on the text as written: URL() would add a "/" and re-encode what the user wrote.
 *
 * @module
 */

/**
 * @example
 * ```ts
 * shownUrl("mqtt://dev:secret@127.0.0.1:1883"); // "mqtt://dev:***@127.0.0.1:1883"
 * shownUrl("postgres://ota:pw@db/ota"); // "postgres://ota:***@db/ota"
 * ```
 */
export function shownUrl(url: string): string {
  return withoutPassword(url, ":***");
}

/**
 * The URL with its password left out (the user kept), for a command line to copy: a client given
 * no password in the URL takes it from its own place (libpq: PGPASSWORD, ~/.pgpass), where a
 * masked one ("***") would be sent as the password.
 *
 * @example
 * ```ts
 * urlWithoutPassword("postgres://ota:pw@db/ota"); // "postgres://ota@db/ota"
 * ```
 */
export function urlWithoutPassword(url: string): string {
  return withoutPassword(url, "");
}

function withoutPassword(url: string, instead: string): string {
  // The userinfo ends at the authority's last "@".
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i.exec(url);
  if (!m) return url;
  const colon = m[2]!.indexOf(":");
  return colon < 0 ? url : `${m[1]}${m[2]!.slice(0, colon)}${instead}@${url.slice(m[0].length)}`;
}
