/**
 * The tuf-js fetcher devices use: sends the device's headers (x-ats-*) on every
 * request, authenticates with the client certificate through Bun's `tls` fetch
 * option, refuses anything larger than a hard cap before reading it, and times
 * out. It knows nothing about trust: tuf-js verifies what it returns.
 *
 * @module
 */
import { BaseFetcher } from "tuf-js";
// tuf-js does not re-export its errors; the Updater only treats a 403/404 on
// N.root.json as "no newer root" when it gets this very class.
import { DownloadHTTPError, DownloadLengthMismatchError } from "tuf-js/dist/error.js";
import { gatewayReason } from "../api/admin-client.ts";
import { netWhy } from "../net/why.ts";
import { MetadataFetchError } from "./verification-errors.ts";

/** The part of `fetch` the fetcher uses (a test or a proxy may pass its own). */
export type FetchLike = (url: string, init: RequestInit & { tls?: TlsOptions }) => Promise<Response>;

/** Client TLS for Bun's fetch: PEM strings. */
export interface TlsOptions {
  ca?: string | string[];
  cert?: string;
  key?: string;
  /** Expected server name when it differs from the URL host. */
  serverName?: string;
}

export interface TufFetcherOptions {
  /** A fetch function, or TLS options for Bun's own fetch. Default: global fetch. */
  fetch?: FetchLike | { tls: TlsOptions };
  /** Extra headers, computed per request (x-ats-tags, x-ats-target...). */
  headers?: () => Record<string, string>;
  /** Per-request timeout. Default 30 s. */
  timeoutMs?: number;
  /** Hard cap per file (by URL), whatever length signed metadata claims. */
  maxBytes: number | ((url: string) => number);
}

const fileOfUrl = (url: string) => url.slice(url.lastIndexOf("/") + 1);

/**
 * A tuf-js `BaseFetcher` over Bun fetch with headers, client TLS and a size cap.
 *
 * @example
 * ```ts
 * new Updater({ metadataDir, metadataBaseUrl, fetcher: new TufFetcher({ fetch: { tls: { ca, cert, key } }, maxBytes: 4 << 20 }) });
 * ```
 */
export class TufFetcher extends BaseFetcher {
  readonly #fetch: FetchLike;
  readonly #tls: TlsOptions | undefined;
  constructor(private readonly opts: TufFetcherOptions) {
    super();
    if (typeof opts.fetch === "function") this.#fetch = opts.fetch;
    else {
      this.#fetch = (url, init) => fetch(url, init);
      this.#tls = opts.fetch?.tls;
    }
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    let res: Response;
    try {
      res = await this.#fetch(url, {
        headers: { ...this.opts.headers?.() },
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
        redirect: "error",
        ...(this.#tls ? { tls: this.#tls } : {}),
      });
    } catch (cause) {
      throw new MetadataFetchError(fileOfUrl(url), `request to ${url} failed: ${netWhy(cause)}`, undefined, { cause });
    }
    if (!res.ok || !res.body) {
      const why = await refusalReason(res);
      throw new DownloadHTTPError(`HTTP ${res.status} for ${url}${why ? `: ${why}` : ""}`, res.status);
    }
    // A web page where metadata should be: a captive portal or a proxy's page, not the gateway.
    // Said as such, rather than as the JSON parser's "Unrecognized token '<'" naming no URL.
    if (/^\s*text\/html\b/i.test(res.headers.get("content-type") ?? "")) {
      await res.body.cancel().catch(() => {});
      throw new MetadataFetchError(fileOfUrl(url), `${url} answered a web page (text/html), not TUF metadata: is a proxy or captive portal in the way?`, res.status);
    }
    const cap = typeof this.opts.maxBytes === "function" ? this.opts.maxBytes(url) : this.opts.maxBytes;
    const declared = Number(res.headers.get("content-length") ?? NaN);
    if (declared > cap) {
      await res.body.cancel().catch(() => {});
      throw new DownloadLengthMismatchError(`Max length reached: ${url} is ${declared} bytes, cap ${cap}`);
    }
    return capStream(res.body as ReadableStream<Uint8Array<ArrayBuffer>>, cap, url);
  }
}

/**
 * The server's own reason for a refusal, when it gives one as the gateway does (a small JSON body
 * `{"error": "Device revoked: ..."}`): a revoked device must read that, not a bare "HTTP 403".
 * Any other body is dropped unread.
 */
async function refusalReason(res: Response): Promise<string> {
  const small = Number(res.headers.get("content-length") ?? NaN) <= 4096;
  if (!small || !/\bjson\b/i.test(res.headers.get("content-type") ?? "")) {
    await res.body?.cancel().catch(() => {});
    return "";
  }
  return (gatewayReason(await res.text().catch(() => "")) ?? "").slice(0, 300);
}

/** Errors out of the stream once more than `cap` bytes went through (bodies without Content-Length). */
function capStream(body: ReadableStream<Uint8Array<ArrayBuffer>>, cap: number, url: string): ReadableStream<Uint8Array<ArrayBuffer>> {
  let seen = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > cap) controller.error(new DownloadLengthMismatchError(`Max length reached: ${url} exceeds the ${cap}-byte cap`));
        else controller.enqueue(chunk);
      },
    }),
  );
}
