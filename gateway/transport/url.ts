/**
 * URL pieces the transport needs: a request's target checked once as it arrives, so that every
 * reader of its path reads the same path (requestTarget); the path and query of a request's URL,
 * cut out without a `URL` object (the device routes and the plain listener's admission read them
 * on every request; the path is left as requestTarget has it, its other escapes not decoded:
 * callers that route on it decide what a `%` means); and a listen address as a URL writes it.
 *
 * @module
 */

/**
 * A host as it goes into a URL or a "host:port": an IPv6 address in brackets.
 *
 * @example
 * ```ts
 * urlHost("::1"); // "[::1]"
 * urlHost("127.0.0.1"); // "127.0.0.1"
 * ```
 */
export const urlHost = (host: string): string => (host.includes(":") ? `[${host}]` : host);

/** A request URL's path (as sent, "/" without one) and query ("" without one); the URL may also be a target alone ("/path?query"). */
export function urlTarget(url: string): { path: string; query: string } {
  const start = url.charCodeAt(0) === 47 /* / */ ? 0 : url.indexOf("/", url.indexOf("://") + 3);
  if (start < 0) return { path: "/", query: "" };
  const q = url.indexOf("?", start);
  return q < 0 ? { path: url.slice(start), query: "" } : { path: url.slice(start, q), query: url.slice(q + 1) };
}

/** RFC 3986 unreserved: A-Z a-z 0-9 - . _ ~ (a `%XX` of one of these is the character itself). */
const isUnreserved = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126;
const hexValue = (c: number) => (c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1);
/** Whether a character code ends a path segment: "/", "?" or NaN (past the end of the string). */
const segmentEnd = (c: number) => c !== c || c === 47 || c === 63;
/** Whether the segment at `i` (just after a "/") is "." or "..". */
const dotSegmentAt = (s: string, i: number): boolean =>
  s.charCodeAt(i) === 46 && (segmentEnd(s.charCodeAt(i + 1)) || (s.charCodeAt(i + 1) === 46 && segmentEnd(s.charCodeAt(i + 2))));

/**
 * A request target as the whole gateway is to read it, or undefined for one to refuse (400). The
 * transport's admission decides on the path and the app's router on the URL parser's reading of
 * it (then percent-decoded); the two must be the same path. So a target is refused where the URL
 * parser would move its path: a dot-segment ("/a/../b", also as "%2e"), a backslash (a "/" to
 * it), a control character, space, non-ASCII byte or "#" anywhere (dropped, escaped or cut); and
 * a malformed percent-escape. A `%XX` of an unreserved character ("%64" for "d") is decoded, as
 * the router would: what stays escaped then (a "/", a space...) is a character no route name
 * has, so the router's decoding of it cannot turn the path into one the admission reads otherwise. Browsers,
 * fetch, Go and Docker's clients resolve dot-segments and escape the rest before sending, so no
 * client of the gateway sends such a target. A target that is neither a path nor an absolute URL
 * ("*", "host:443") is left as it is (the Request constructor refuses it). One pass over the
 * target, and no allocation, for a target without a `%`.
 *
 * @example
 * ```ts
 * requestTarget("/repo/wait?after=3"); // "/repo/wait?after=3" (the same string)
 * requestTarget("/v2/%61pp/manifests/x"); // "/v2/app/manifests/x"
 * requestTarget("/repo/%2e%2e/ca.pem"); // undefined
 * ```
 */
export function requestTarget(target: string): string | undefined {
  let start = 0;
  if (target.charCodeAt(0) !== 47 /* / */) {
    const scheme = target.indexOf("://");
    const slash = scheme < 0 ? -1 : target.indexOf("/", scheme + 3);
    const query = scheme < 0 ? -1 : target.indexOf("?", scheme + 3);
    // No path ("*", "http://gw", "http://gw?x/y"): only the characters are checked.
    start = slash < 0 || (query >= 0 && query < slash) ? target.length : slash;
  }
  let pathEnd = target.length;
  let escaped = false;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 32 || c >= 127 || c === 35 /* # */) return undefined;
    if (i < start || i >= pathEnd) continue;
    if (c === 63 /* ? */) pathEnd = i;
    else if (c === 92 /* \ */) return undefined;
    else if (c === 37 /* % */) {
      if (hexValue(target.charCodeAt(i + 1)) < 0 || hexValue(target.charCodeAt(i + 2)) < 0) return undefined;
      escaped = true;
    } else if (c === 47 && dotSegmentAt(target, i + 1)) return undefined;
  }
  if (!escaped) return target;
  // Rare: decode the escaped unreserved characters, then look for dot-segments again ("/%2e%2e/").
  let path = "";
  let from = start;
  for (let i = target.indexOf("%", start); i >= 0 && i < pathEnd; i = target.indexOf("%", i + 3)) {
    const c = hexValue(target.charCodeAt(i + 1)) * 16 + hexValue(target.charCodeAt(i + 2));
    if (!isUnreserved(c)) continue;
    path += target.slice(from, i) + String.fromCharCode(c);
    from = i + 3;
  }
  if (from === start) return target;
  path += target.slice(from, pathEnd);
  for (let i = path.indexOf("/."); i >= 0; i = path.indexOf("/.", i + 1)) if (dotSegmentAt(path, i + 1)) return undefined;
  return target.slice(0, start) + path + target.slice(pathEnd);
}
