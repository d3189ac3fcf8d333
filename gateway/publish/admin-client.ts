/**
 * The two admin calls publish makes: read the signed targets (to number the
 * new version) and add the new targets in one atomic POST. TLS trusts only the
 * CA the token pins.
 *
 * @module
 */
import type { TargetEntry } from "../../lib/api/target.ts";

export class AdminApiError extends Error {
  override name = "AdminApiError";
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export class AdminClient {
  constructor(
    private readonly server: string,
    private readonly token: string,
    private readonly ca: string | undefined,
  ) {}

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const url = new URL(path, this.server).toString();
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        ...(this.ca ? { tls: { ca: this.ca } } : {}),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (cause) {
      throw new AdminApiError(`Cannot ${method} ${url}: ${(cause as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      let why = text.slice(0, 300);
      try {
        why = (JSON.parse(text) as { error?: string }).error ?? why;
      } catch {
        // plain text body
      }
      throw new AdminApiError(`Cannot ${method} ${url}: gateway answered ${res.status}${why ? ` ${why}` : ""}`, res.status);
    }
    try {
      return text ? JSON.parse(text) : {};
    } catch {
      throw new AdminApiError(`Cannot ${method} ${url}: the answer is not JSON`, res.status);
    }
  }

  /** `GET /admin/targets`. @throws {AdminApiError} */
  async targets(): Promise<{ targets: Record<string, TargetEntry>; version: number }> {
    const body = (await this.call("GET", "/admin/targets")) as { targets?: Record<string, TargetEntry>; version?: number };
    return { targets: body.targets ?? {}, version: body.version ?? 0 };
  }

  /** `POST /admin/targets {targets}`: all or nothing. @throws {AdminApiError} */
  async addTargets(targets: Record<string, TargetEntry>): Promise<unknown> {
    return await this.call("POST", "/admin/targets", { targets });
  }
}
