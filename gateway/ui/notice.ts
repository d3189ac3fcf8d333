/**
 * One-time notices for the page a browser loads next, after a form or a session's end: a token
 * just created (its secret, never in a URL), why a session ended, what adding a device to a group
 * did. Each is sealed (./session.ts) in a cookie of its own, on the path of the page that shows it,
 * that lives a minute and is deleted when read: a reload shows it no more.
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

/** The notice in cookie `name`, for the pages under `path`. */
export function notice<T>(name: string, path: string): Notice<T> {
  return {
    async leave(c, value) {
      setCookie(c, name, await seal(c.var.gw, value), { path, httpOnly: true, secure: true, sameSite: "Strict", maxAge: 60 });
    },
    async take(c) {
      const value = await unseal<T>(c.var.gw, getCookie(c, name));
      if (value) deleteCookie(c, name, { path, secure: true });
      return value;
    },
  };
}
