/**
 * One-time notices for the page a browser loads next, after a form or a session's end: a token
 * just created (its secret, never in a URL), why a session ended, what adding a device to a group
 * did. Each is sealed (./session.ts) in a cookie of its own, on the path of the page that shows it,
 * that lives a minute and is deleted when read: a reload shows it no more. The cookie's name is
 * sealed with the value, so that one sealed value (a notice's, the session's) put in another
 * cookie opens nothing; a notice cookie that does not open is deleted all the same.
 *
 * @module
 */
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { GatewayEnv } from "../env.ts";
import { seal, unseal } from "./session.ts";

export interface Notice<T> {
  /** Leaves `value` for the next page on the notice's path. */
  leave<E extends GatewayEnv>(c: Context<E>, value: T): Promise<void>;
  /** The value left, once: the cookie goes with this answer. */
  take<E extends GatewayEnv>(c: Context<E>): Promise<T | undefined>;
}

/** What a notice's cookie holds: the cookie's own name, and the value left. */
interface Sealed<T> {
  notice: string;
  value: T;
}

/** The notice in cookie `name`, for the pages under `path`. */
export function notice<T>(name: string, path: string): Notice<T> {
  return {
    async leave(c, value) {
      const sealed: Sealed<T> = { notice: name, value };
      setCookie(c, name, await seal(c.var.gw, sealed), { path, httpOnly: true, secure: true, sameSite: "Strict", maxAge: 60 });
    },
    async take(c) {
      const cookie = getCookie(c, name);
      if (cookie === undefined) return undefined;
      deleteCookie(c, name, { path, secure: true });
      const opened = await unseal<Sealed<T>>(c.var.gw, cookie);
      return opened?.notice === name ? opened.value : undefined;
    },
  };
}
