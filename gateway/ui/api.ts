/**
 * How the dashboard reads and acts: through the gateway's own admin API, in
 * process, with the signed-in user's token, exactly as the CLI would over
 * HTTPS. The API's role checks decide; the pages only hide what a role cannot do.
 *
 * @module
 */
import type { Hono } from "hono";
import type { Bindings } from "../env.ts";

/** An admin API answer other than 2xx; `status` is the API's. */
export class ApiCallError extends Error {
  override name = "ApiCallError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface ApiAnswer<T> {
  body: T;
  /** The API's Server-Timing header (store time), if any. */
  timing: string | null;
}

export type AdminApi = <T>(method: string, path: string, body?: unknown) => Promise<ApiAnswer<T>>;

/** An admin API client for one request: `token` is the user's own. */
export function adminApi(app: Hono<any>, token: string, env: Bindings | undefined): AdminApi {
  return async <T>(method: string, path: string, body?: unknown) => {
    const res = await app.request(
      path,
      {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      },
      { remoteAddr: env?.remoteAddr },
    );
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const msg = (parsed as { error?: string } | undefined)?.error ?? `${method} ${path} answered ${res.status}`;
      throw new ApiCallError(res.status, msg);
    }
    return { body: parsed as T, timing: res.headers.get("server-timing") };
  };
}
