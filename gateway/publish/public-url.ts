/**
 * The gateway's public URL as its `GET /admin/whoami` answer says it (`publicUrl`: serve's
 * --public-url, the URL devices register with). Targets name the gateway's registry by this URL's
 * host, which is not always the address a CI job or an operator reaches the gateway at (one
 * replica's own, behind a load balancer): publish pins under it, export reads what is pinned
 * under it through the address it was given. A gateway before whoami carried it says none.
 *
 * @module
 */

/**
 * The public URL a whoami answer says, if it says one that parses.
 *
 * @example
 * ```ts
 * publicUrlOf(await admin.whoami().catch(() => undefined))?.host; // "gw.example:8443", or undefined for an older gateway
 * ```
 */
export function publicUrlOf(who: object | undefined): URL | undefined {
  const said = (who as { publicUrl?: unknown } | undefined)?.publicUrl;
  return typeof said === "string" ? (URL.parse(said) ?? undefined) : undefined;
}
