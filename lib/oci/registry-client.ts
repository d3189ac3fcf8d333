/**
 * A client for the OCI distribution API (pull, push, mount, tags) that handles the auth dance
 * registries use (Basic, Bearer token flow with per-scope caching, client certificates, a
 * private CA), so callers only say which repository and which content they want.
 *
 * @module
 */
import { netWhy } from "../net/why.ts";
import { digestBlob, digestBytes, digestFile, DigestMismatchError, parseDigest, tryParseDigest } from "./digest.ts";
import { MANIFEST_ACCEPT } from "./media-types.ts";

/** Credentials: a username and password, or a token (sent as Bearer; as Basic password if asked). */
export type RegistryAuth = { username: string; password: string } | { token: string };

/** Options of {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** `host[:port]`; `docker.io` means Docker Hub. */
  registry: string;
  /** Default https. Use http only for a registry on loopback. */
  scheme?: "https" | "http";
  auth?: RegistryAuth;
  /** PEM strings, passed to Bun fetch's `tls` option (custom CA, client certificate). */
  tls?: { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  userAgent?: string;
  /** Extra headers sent on every request. */
  headers?: Record<string, string>;
  /**
   * A token realm other than the registry that these credentials and TLS options are for (an
   * external registry using the gateway as its realm: the gateway's token or the device's
   * certificate, and the factory CA). Used, in place of `auth` and `tls`, only for a realm at
   * exactly this origin; any other realm gets `auth` and `tls`, as before.
   */
  realm?: { origin: string; auth?: RegistryAuth; tls?: RegistryClientOptions["tls"] };
  /** How long a manifest request waits for an answer (default {@link ANSWER_TIMEOUT_MS}). */
  answerTimeoutMs?: number;
}

/** A manifest as fetched: its exact bytes, media type and digest. */
export interface FetchedManifest {
  bytes: Uint8Array;
  mediaType: string;
  digest: string;
}

/** Thrown for a registry answer that is not the expected success, carrying the OCI error code. */
export class RegistryError extends Error {
  override name = "RegistryError";
  readonly status: number;
  /** The first OCI error code (`BLOB_UNKNOWN`, `UNAUTHORIZED`...), if the body had one. */
  readonly code?: string;
  readonly detail?: unknown;
  constructor(message: string, status: number, code?: string, detail?: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** Thrown when the registry cannot be reached (refused, TLS failure, reset). Retryable. */
/** How long a manifest request waits for the registry's answer (its headers) before it gives up. */
export const ANSWER_TIMEOUT_MS = 30_000;

export class RegistryUnreachableError extends Error {
  override name = "RegistryUnreachableError";
}

/** Thrown when a response body is larger than allowed (a manifest over its cap). */
export class ResponseTooLargeError extends Error {
  override name = "ResponseTooLargeError";
}

/** Default cap on manifest size: far above any real manifest, small enough to hold in memory. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

interface Challenge {
  scheme: "basic" | "bearer";
  params: Record<string, string>;
}

/**
 * One scope per resource, its actions merged and sorted: our `repository:a:pull,push` and the
 * registry's challenge `repository:a:push,pull` are one request for one token, not two strings.
 */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const s of scopes) {
    const last = s.lastIndexOf(":");
    if (last <= 0 || s.indexOf(":") === last) {
      byResource.set(s, byResource.get(s) ?? new Set());
      continue;
    }
    const resource = s.slice(0, last);
    const actions = byResource.get(resource) ?? new Set<string>();
    for (const a of s.slice(last + 1).split(",")) if (a) actions.add(a);
    byResource.set(resource, actions);
  }
  return [...byResource].map(([r, a]) => (a.size ? `${r}:${[...a].sort().join(",")}` : r)).sort();
}

/** Parses a `WWW-Authenticate` header (one challenge: Basic or Bearer with quoted params). */
export function parseWwwAuthenticate(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== "basic" && scheme !== "bearer") return undefined;
  const params: Record<string, string> = {};
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
  for (let p = re.exec(m[2]!); p; p = re.exec(m[2]!)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
  }
  return { scheme, params };
}

interface RequestOptions {
  headers?: Record<string, string>;
  /** A factory, so the body can be re-sent after an auth challenge. */
  body?: () => RequestInit["body"];
  scopes: string[];
  signal?: AbortSignal;
}

const pullScope = (repo: string) => `repository:${repo}:pull`;
const pushScope = (repo: string) => `repository:${repo}:pull,push`;

/**
 * Talks to one registry. One instance caches tokens per scope, so reuse it.
 *
 * @example
 * ```ts
 * const client = new RegistryClient({ registry: "127.0.0.1:5000", scheme: "http" });
 * const { digest } = await client.getManifest("main/app", "latest");
 * ```
 */
export class RegistryClient {
  readonly registry: string;
  readonly baseUrl: string;
  private readonly opts: RegistryClientOptions;
  private readonly tokens = new Map<string, { token: string; expires: number }>(); // expires: performance.now() ms
  /** Set once the registry asked for Basic: then we send it up front. */
  private basicPreferred = false;

  constructor(opts: RegistryClientOptions) {
    this.opts = opts;
    this.registry = opts.registry;
    const host = opts.registry === "docker.io" ? "registry-1.docker.io" : opts.registry;
    this.baseUrl = `${opts.scheme ?? "https"}://${host}`;
  }

  // ---- auth ---------------------------------------------------------------------------------

  private basicHeader(a: RegistryAuth | undefined = this.opts.auth): string | undefined {
    if (!a) return undefined;
    const [user, pass] = "token" in a ? ["token", a.token] : [a.username, a.password];
    return `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
  }

  private scopeKey(scopes: string[]): string {
    return [...new Set(scopes)].sort().join(" ");
  }

  private cachedAuth(scopes: string[]): string | undefined {
    const t = this.tokens.get(this.scopeKey(scopes));
    if (t && t.expires > performance.now()) return `Bearer ${t.token}`;
    if (this.basicPreferred) return this.basicHeader();
    const a = this.opts.auth;
    if (a && "token" in a && this.tokens.size === 0) return `Bearer ${a.token}`;
    return undefined;
  }

  private async fetchToken(ch: Challenge, scopes: string[], signal?: AbortSignal): Promise<string> {
    const realm = ch.params.realm;
    if (!realm) throw new RegistryError(`Cannot authenticate to ${this.registry}: Bearer challenge has no realm`, 401, "UNAUTHORIZED");
    const url = new URL(realm);
    if (ch.params.service) url.searchParams.set("service", ch.params.service);
    const known = this.opts.realm && URL.parse(this.opts.realm.origin)?.origin === url.origin ? this.opts.realm : undefined;
    // With the realm's own credentials, only the scopes this request needs: a challenge's extra
    // ones (push, delete) would be granted by what those credentials may do, not by what we asked.
    const all = [...scopes, ...(known ? [] : (ch.params.scope?.split(" ").filter(Boolean) ?? []))];
    for (const s of mergeScopes(all)) url.searchParams.append("scope", s);
    const headers: Record<string, string> = { ...this.opts.headers };
    if (this.opts.userAgent) headers["user-agent"] = this.opts.userAgent;
    const basic = this.basicHeader(known ? known.auth : this.opts.auth);
    if (basic) headers.authorization = basic;
    let res: Response;
    try {
      res = await fetch(url, { headers, tls: known ? known.tls : this.opts.tls, signal });
    } catch (err) {
      const name = (err as Error)?.name;
      if (name === "AbortError" || name === "TimeoutError") throw err;
      // Said like a registry that cannot be reached, naming the realm: a TLS failure here is the CA, not the registry.
      throw new RegistryUnreachableError(`Cannot get a token from ${url.origin}${url.pathname} for ${this.registry}: ${netWhy(err)}`, { cause: err });
    }
    if (!res.ok) throw await this.errorFrom(res, `get a token from ${url.origin}${url.pathname}`);
    const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError(`Cannot get a token from ${url.origin}${url.pathname}: response has no token`, res.status, "UNAUTHORIZED");
    const ttl = Math.max(30, typeof body.expires_in === "number" ? body.expires_in : 60);
    this.tokens.set(this.scopeKey(scopes), { token, expires: performance.now() + (ttl - 10) * 1000 });
    return `Bearer ${token}`;
  }

  // ---- transport ----------------------------------------------------------------------------

  private async rawFetch(method: string, url: URL, init: RequestOptions, auth: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { "accept-encoding": "identity", ...this.opts.headers, ...init.headers };
    if (this.opts.userAgent) headers["user-agent"] = this.opts.userAgent;
    let current = url;
    let sendAuth = auth;
    // Follow redirects by hand so credentials never leave for another origin (blob storage
    // redirects to CDNs and S3 are common).
    for (let hop = 0; hop < 6; hop++) {
      const h = { ...headers };
      if (sendAuth) h.authorization = sendAuth;
      let res: Response;
      try {
        res = await fetch(current, {
          method,
          headers: h,
          body: init.body ? init.body() : undefined,
          redirect: "manual",
          // Blobs are hashed as stored: never let a transparent decompression change the bytes.
          decompress: false,
          tls: this.opts.tls,
          signal: init.signal,
        });
      } catch (err) {
        const name = (err as Error)?.name;
        if (name === "AbortError" || name === "TimeoutError") throw err;
        throw new RegistryUnreachableError(`Cannot ${method} ${current.origin}${current.pathname}: ${netWhy(err)}`, { cause: err });
      }
      const loc = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && res.status !== 304 && loc && (method === "GET" || method === "HEAD")) {
        await res.body?.cancel().catch(() => {});
        const next = new URL(loc, current);
        if (next.origin !== current.origin) sendAuth = undefined;
        current = next;
        continue;
      }
      return res;
    }
    throw new RegistryError(`Cannot ${method} ${url.pathname}: too many redirects`, 310);
  }

  /**
   * Sends a request with whatever credentials are known, answers one 401 challenge and
   * retries once. Returns the response, whatever its status.
   */
  async request(method: string, pathOrUrl: string | URL, init: RequestOptions): Promise<Response> {
    const url = typeof pathOrUrl === "string" ? new URL(pathOrUrl, this.baseUrl) : pathOrUrl;
    const first = this.cachedAuth(init.scopes);
    const res = await this.rawFetch(method, url, init, first);
    if (res.status !== 401) return res;
    const ch = parseWwwAuthenticate(res.headers.get("www-authenticate"));
    if (!ch) return res;
    let next: string | undefined;
    if (ch.scheme === "basic") {
      next = this.basicHeader();
      if (next) this.basicPreferred = true;
    } else {
      next = await this.fetchToken(ch, init.scopes, init.signal);
    }
    if (!next || next === first) return res;
    await res.body?.cancel().catch(() => {});
    return await this.rawFetch(method, url, init, next);
  }

  /** Builds a RegistryError from a failed response, reading the OCI error body. */
  async errorFrom(res: Response, what: string): Promise<RegistryError> {
    let code: string | undefined;
    let message = "";
    let detail: unknown;
    try {
      const text = res.body ? new TextDecoder().decode(await readLimited(res, 64 * 1024)) : "";
      try {
        const j = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[]; error?: unknown };
        const e = j.errors?.[0];
        if (e) {
          code = e.code;
          message = e.message ?? "";
          detail = e.detail;
        } else if (typeof j.error === "string") message = j.error.slice(0, 500); // the gateway's own answers ("The gateway's disk is full: ...")
      } catch {
        message = text.trim().slice(0, 200);
      }
    } catch {
      // body unreadable: status alone will do
    }
    const tail = [code, message].filter(Boolean).join(" ");
    return new RegistryError(`Cannot ${what}: registry ${this.registry} returned ${res.status}${tail ? ` ${tail}` : ""}`, res.status, code, detail);
  }

  /**
   * `send`'s answer, or a RegistryUnreachableError once the registry has given none (not even
   * its headers) for `answerTimeoutMs`: a manifest is small, and a registry that accepts
   * the connection and then says nothing (a frozen gateway) would otherwise hold the caller for
   * ever, where a blob pull has its stall timeout.
   */
  async #answered(what: string, outer: AbortSignal | undefined, send: (signal: AbortSignal) => Promise<Response>): Promise<Response> {
    const ms = this.opts.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
    const silent = new AbortController();
    const timer = setTimeout(() => silent.abort(), ms);
    try {
      return await send(outer ? AbortSignal.any([outer, silent.signal]) : silent.signal);
    } catch (err) {
      if (silent.signal.aborted && !outer?.aborted)
        throw new RegistryUnreachableError(`Cannot ${what}: registry ${this.registry} gave no answer in ${ms / 1000} s`, { cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- API ----------------------------------------------------------------------------------

  /** Checks the registry answers `GET /v2/` with our credentials. @throws {RegistryError} */
  async ping(): Promise<void> {
    const res = await this.request("GET", "/v2/", { scopes: [] });
    if (!res.ok) throw await this.errorFrom(res, "reach the registry API");
    await res.body?.cancel().catch(() => {});
  }

  /**
   * Fetches a manifest or index by tag or digest, byte-exact. A digest reference is verified.
   *
   * @example
   * ```ts
   * const m = await client.getManifest("library/busybox", "latest");
   * parseManifest(m.bytes, m.mediaType);
   * ```
   * @throws {RegistryError} On a non-2xx answer (404 MANIFEST_UNKNOWN...).
   * @throws {DigestMismatchError} If fetched by digest and the bytes hash to something else.
   * @throws {ResponseTooLargeError} If larger than `maxBytes` (default 4 MiB).
   */
  async getManifest(repo: string, ref: string, opts: { accept?: string[]; maxBytes?: number; signal?: AbortSignal } = {}): Promise<FetchedManifest> {
    const res = await this.#answered(`get manifest ${repo}:${ref}`, opts.signal, (signal) =>
      this.request("GET", `/v2/${repo}/manifests/${ref}`, {
        headers: { accept: (opts.accept ?? MANIFEST_ACCEPT).join(", ") },
        scopes: [pullScope(repo)],
        signal,
      }),
    );
    if (!res.ok) throw await this.errorFrom(res, `get manifest ${repo}:${ref}`);
    const bytes = await readLimited(res, opts.maxBytes ?? MAX_MANIFEST_BYTES, `Manifest ${repo}:${ref}`);
    const want = tryParseDigest(ref);
    const digest = digestBytes(bytes, want?.algorithm ?? "sha256");
    if (want && digest !== ref) throw new DigestMismatchError(`Cannot get manifest ${repo}@${ref}`, ref, digest);
    let mediaType = res.headers.get("content-type")?.split(";")[0]?.trim() ?? "";
    try {
      const doc = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown };
      if (typeof doc.mediaType === "string") mediaType = doc.mediaType;
    } catch {
      // not JSON: the caller's parse will say so
    }
    return { bytes, mediaType, digest };
  }

  /**
   * Asks whether a manifest exists without fetching it.
   *
   * @returns Its digest, media type and size, or `undefined` on 404.
   * @throws {RegistryError} On any other failure.
   */
  async headManifest(repo: string, ref: string, opts: { accept?: string[]; signal?: AbortSignal } = {}): Promise<{ digest: string; mediaType: string; size: number } | undefined> {
    const res = await this.#answered(`check manifest ${repo}:${ref}`, opts.signal, (signal) =>
      this.request("HEAD", `/v2/${repo}/manifests/${ref}`, {
        headers: { accept: (opts.accept ?? MANIFEST_ACCEPT).join(", ") },
        scopes: [pullScope(repo)],
        signal,
      }),
    );
    if (res.status === 404) return undefined;
    if (!res.ok) throw await this.errorFrom(res, `check manifest ${repo}:${ref}`);
    let digest = res.headers.get("docker-content-digest") ?? "";
    const mediaType = res.headers.get("content-type")?.split(";")[0]?.trim() ?? "";
    const size = Number(res.headers.get("content-length") ?? "0");
    if (!tryParseDigest(digest)) {
      if (tryParseDigest(ref)) digest = ref;
      else {
        // No digest header: the only trustworthy answer is to hash the bytes.
        const m = await this.getManifest(repo, ref, opts);
        return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.byteLength };
      }
    }
    return { digest, mediaType, size };
  }

  /**
   * Uploads a manifest under a tag or digest; returns its digest.
   *
   * @throws {RegistryError} If the registry refuses it (e.g. MANIFEST_BLOB_UNKNOWN).
   */
  async putManifest(repo: string, ref: string, bytes: Uint8Array, mediaType: string, opts: { signal?: AbortSignal } = {}): Promise<string> {
    const want = tryParseDigest(ref);
    const digest = digestBytes(bytes, want?.algorithm ?? "sha256");
    if (want && digest !== ref) throw new DigestMismatchError(`Cannot put manifest ${repo}@${ref}`, ref, digest);
    const res = await this.request("PUT", `/v2/${repo}/manifests/${ref}`, {
      headers: { "content-type": mediaType },
      body: () => bytes,
      scopes: [pushScope(repo)],
      signal: opts.signal,
    });
    if (res.status !== 201 && !res.ok) throw await this.errorFrom(res, `put manifest ${repo}:${ref}`);
    await res.body?.cancel().catch(() => {});
    return digest;
  }

  /** Deletes a manifest by digest (registries refuse deletes unless configured to allow them). */
  async deleteManifest(repo: string, digest: string): Promise<void> {
    const res = await this.request("DELETE", `/v2/${repo}/manifests/${digest}`, { scopes: [`repository:${repo}:delete`, pushScope(repo)] });
    if (!res.ok) throw await this.errorFrom(res, `delete manifest ${repo}@${digest}`);
    await res.body?.cancel().catch(() => {});
  }

  /**
   * Asks whether a blob exists.
   *
   * @returns Its size, or `undefined` on 404.
   * @throws {RegistryError} On any other failure (401, 5xx...).
   */
  async blobExists(repo: string, digest: string, opts: { signal?: AbortSignal } = {}): Promise<number | undefined> {
    const res = await this.request("HEAD", `/v2/${repo}/blobs/${digest}`, { scopes: [pullScope(repo)], signal: opts.signal });
    if (res.status === 404) return undefined;
    if (!res.ok) throw await this.errorFrom(res, `check blob ${digest} in ${repo}`);
    return Number(res.headers.get("content-length") ?? "0");
  }

  /**
   * Starts downloading a blob; the caller streams `res.body` and must check the status:
   * with `start` (and `end`, inclusive) the registry should answer 206 with `Content-Range`,
   * but may send 200 and the whole blob.
   *
   * @throws {RegistryError} On a non-2xx answer (416 if `start` is past the end).
   */
  async fetchBlob(repo: string, digest: string, opts: { start?: number; end?: number; signal?: AbortSignal } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (opts.end !== undefined) headers.range = `bytes=${opts.start ?? 0}-${opts.end}`;
    else if (opts.start) headers.range = `bytes=${opts.start}-`;
    const res = await this.request("GET", `/v2/${repo}/blobs/${digest}`, { headers, scopes: [pullScope(repo)], signal: opts.signal });
    if (!res.ok) throw await this.errorFrom(res, `fetch blob ${digest} from ${repo}`);
    return res;
  }

  /**
   * The uncompressed size a gzip blob declares in its trailer (ISIZE: the last 4 bytes, the
   * size modulo 2^32), read with one 4-byte Range request.
   *
   * @returns The size, or `undefined` if the registry does not serve ranges.
   * @throws {RegistryError | RegistryUnreachableError}
   */
  async gzipUncompressedSize(repo: string, digest: string, size: number, opts: { signal?: AbortSignal } = {}): Promise<number | undefined> {
    if (size < 18) return undefined; // smaller than an empty gzip member
    const res = await this.fetchBlob(repo, digest, { start: size - 4, end: size - 1, ...(opts.signal ? { signal: opts.signal } : {}) });
    if (res.status !== 206) {
      await res.body?.cancel().catch(() => {});
      return undefined;
    }
    const tail = await readLimited(res, 4, `Trailer of ${digest}`);
    if (tail.byteLength !== 4) return undefined;
    return new DataView(tail.buffer, tail.byteOffset, 4).getUint32(0, true);
  }

  /** Fetches a small blob into memory, verified against its digest. */
  async getBlobBytes(repo: string, digest: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<Uint8Array> {
    const d = parseDigest(digest);
    const res = await this.fetchBlob(repo, digest, opts);
    const bytes = await readLimited(res, opts.maxBytes ?? MAX_MANIFEST_BYTES, `Blob ${digest}`);
    const got = digestBytes(bytes, d.algorithm);
    if (got !== digest) throw new DigestMismatchError(`Cannot fetch blob ${digest} from ${repo}`, digest, got);
    return bytes;
  }

  /**
   * Uploads a blob: monolithic (one PUT) or, with `chunkSize`, in PATCH chunks with
   * `Content-Range`. A file or Blob source (e.g. `Bun.file(p).slice(a, b)`) is streamed from
   * disk. The digest and size are computed if not given. `onProgress` hears of bytes as they go
   * in one PUT, and after each chunk in PATCHes.
   *
   * @example
   * ```ts
   * await client.pushBlob("main/app", { path: "/tmp/layer.tar.gz" }, { chunkSize: 8 << 20 });
   * ```
   * @throws {RegistryError} If the registry refuses the upload (e.g. DIGEST_INVALID).
   */
  async pushBlob(
    repo: string,
    source: Uint8Array | Blob | { path: string },
    opts: { digest?: string; size?: number; chunkSize?: number; signal?: AbortSignal; onProgress?: (sent: number, total: number) => void } = {},
  ): Promise<{ digest: string; size: number }> {
    let { digest, size } = opts;
    if (digest === undefined || size === undefined) {
      const computed =
        source instanceof Uint8Array ? { digest: digestBytes(source), size: source.byteLength } : source instanceof Blob ? await digestBlob(source) : await digestFile(source.path);
      digest ??= computed.digest;
      size ??= computed.size;
    }
    const blob: Blob = source instanceof Uint8Array ? new Blob([source]) : source instanceof Blob ? source : Bun.file(source.path);
    const start = await this.request("POST", `/v2/${repo}/blobs/uploads/`, { scopes: [pushScope(repo)], signal: opts.signal });
    if (start.status !== 202) throw await this.errorFrom(start, `start upload of ${digest} to ${repo}`);
    let location = this.uploadLocation(start, `start upload of ${digest} to ${repo}`);
    await start.body?.cancel().catch(() => {});
    const chunkSize = opts.chunkSize;
    if (chunkSize !== undefined && chunkSize > 0 && size > chunkSize) {
      for (let off = 0; off < size; off += chunkSize) {
        const end = Math.min(size, off + chunkSize);
        const part = blob.slice(off, end);
        const res = await this.request("PATCH", location, {
          headers: { "content-type": "application/octet-stream", "content-range": `${off}-${end - 1}`, "content-length": String(end - off) },
          body: () => part,
          scopes: [pushScope(repo)],
          signal: opts.signal,
        });
        if (res.status !== 202) throw await this.errorFrom(res, `upload bytes ${off}-${end - 1} of ${digest} to ${repo}`);
        location = this.uploadLocation(res, `upload bytes ${off}-${end - 1} of ${digest} to ${repo}`);
        await res.body?.cancel().catch(() => {});
        opts.onProgress?.(end, size);
      }
      location.searchParams.set("digest", digest);
      const res = await this.request("PUT", location, { body: () => new Uint8Array(), headers: { "content-length": "0" }, scopes: [pushScope(repo)], signal: opts.signal });
      if (res.status !== 201) throw await this.errorFrom(res, `finish upload of ${digest} to ${repo}`);
      await res.body?.cancel().catch(() => {});
    } else {
      location.searchParams.set("digest", digest);
      const whole = blob.slice(0, size);
      const onProgress = opts.onProgress;
      const res = await this.request("PUT", location, {
        headers: { "content-type": "application/octet-stream", "content-length": String(size) },
        // Watched, the body is a stream that counts what fetch takes from it, so a multi-GB PUT
        // reports as it goes; unwatched, the Blob itself, which Bun sends without copying it through JS.
        body: () => (onProgress ? countedBody(whole, (sent) => onProgress(sent, size)) : whole),
        scopes: [pushScope(repo)],
        signal: opts.signal,
      });
      if (res.status !== 201) throw await this.errorFrom(res, `upload ${digest} to ${repo}`);
      await res.body?.cancel().catch(() => {});
      opts.onProgress?.(size, size);
    }
    return { digest, size };
  }

  private uploadLocation(res: Response, what: string): URL {
    const loc = res.headers.get("location");
    if (!loc) throw new RegistryError(`Cannot ${what}: registry ${this.registry} sent no upload Location`, res.status);
    return new URL(loc, this.baseUrl);
  }

  /**
   * Asks the registry to link a blob from another repository (cross-repository mount).
   *
   * @returns true if mounted; false if the registry declined (the upload it opened is cancelled).
   * @throws {RegistryError} On a failure other than declining.
   */
  async mountBlob(repo: string, digest: string, fromRepo: string, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    const url = new URL(`/v2/${repo}/blobs/uploads/`, this.baseUrl);
    url.searchParams.set("mount", digest);
    url.searchParams.set("from", fromRepo);
    const res = await this.request("POST", url, { scopes: [pushScope(repo), pullScope(fromRepo)], signal: opts.signal });
    await res.body?.cancel().catch(() => {});
    if (res.status === 201) return true;
    if (res.status === 202) {
      const loc = res.headers.get("location");
      if (loc) {
        const del = await this.request("DELETE", new URL(loc, this.baseUrl), { scopes: [pushScope(repo)] }).catch(() => undefined);
        await del?.body?.cancel().catch(() => {});
      }
      return false;
    }
    throw await this.errorFrom(res, `mount ${digest} from ${fromRepo} into ${repo}`);
  }

  /**
   * Lists a repository's tags, following `Link: <...>; rel="next"` pagination.
   *
   * @throws {RegistryError} E.g. 404 NAME_UNKNOWN for a repository that does not exist.
   */
  async listTags(repo: string, opts: { pageSize?: number; signal?: AbortSignal } = {}): Promise<string[]> {
    const tags: string[] = [];
    let url: URL | undefined = new URL(`/v2/${repo}/tags/list`, this.baseUrl);
    if (opts.pageSize) url.searchParams.set("n", String(opts.pageSize));
    for (let page = 0; url && page < 10_000; page++) {
      const res = await this.request("GET", url, { scopes: [pullScope(repo)], signal: opts.signal });
      if (!res.ok) throw await this.errorFrom(res, `list tags of ${repo}`);
      const body = (await res.json()) as { tags?: string[] | null };
      tags.push(...(body.tags ?? []));
      const link = res.headers.get("link");
      const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      url = m ? new URL(m[1]!, url) : undefined;
    }
    return tags;
  }
}

/**
 * `blob` as a request body that counts the bytes read from it (what fetch has taken to send, a
 * socket buffer ahead of what the far end got), so one PUT can report its progress. A fresh
 * count per body: a request sent again after an auth challenge starts from 0.
 */
function countedBody(blob: Blob, onSent: (sent: number) => void): ReadableStream<Uint8Array> {
  const reader = blob.stream().getReader();
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) return controller.close();
      sent += value.byteLength;
      controller.enqueue(value);
      onSent(sent);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** Reads a response body into memory, refusing more than `max` bytes. */
export async function readLimited(res: Response, max: number, what = "Response"): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => {});
    throw new ResponseTooLargeError(`${what} is too large: ${declared} bytes, limit ${max}`);
  }
  if (!res.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of res.body) {
    n += chunk.byteLength;
    if (n > max) {
      throw new ResponseTooLargeError(`${what} is too large: more than ${max} bytes`);
    }
    chunks.push(chunk);
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}
