/**
 * The embedded OCI registry: a Hono sub-app serving the distribution API under `/v2` from a
 * {@link RegistryStorage}. Policy stays with the gateway: every request is checked with the
 * `authorize` callback (or a bearer token from `GET /token`); this module only maps refusals
 * to the standard 401 challenge or 403 DENIED.
 *
 * Repository names contain slashes, so the routes are matched by hand on the path tail
 * (`/manifests/<ref>`, `/blobs/<digest>`, ...) as distribution does.
 *
 * @module
 */
import { Hono, type Context } from "hono";
import { RegistryRequestError, errorResponse } from "./errors.ts";
import { checkDigest, checkRepositoryName, isRepositoryName } from "./_names.ts";
import { parseRange, parseUploadRange } from "./range.ts";
import { MAX_MANIFEST_BYTES, RegistryStorage } from "./storage.ts";
import { UploadSessions, rangeHeaders } from "./uploads.ts";
import { OCI_INDEX } from "./manifest.ts";
import { ServedBytes } from "./served-bytes.ts";
import { LayerDeltas, type DeltaOptions } from "./deltas.ts";
import { bearerToken, tokenAllows, tokenTimeRefusal, verifyRegistryToken, type RegistryAccess, type TokenClaims } from "./token.ts";

export interface RegistryOptions {
  /** Storage directory (created on demand). */
  root: string;
  /**
   * The gateway's policy. `repository` "" asks "may this caller use the registry at all"
   * (the `/v2/` ping). Not called when a valid bearer token already grants the access.
   */
  authorize: (c: Context, access: RegistryAccess) => Promise<boolean> | boolean;
  /** URL of `GET /token`; when set, 401s carry a Bearer challenge, else a Basic one. */
  tokenRealm?: string;
  /** HMAC key of the tokens issued by {@link createTokenEndpoint}; without it Bearer tokens are not checked here. */
  tokenSecret?: string | Uint8Array;
  /** Whether the holder of a valid token (its `sub`) has been revoked since it was issued. */
  tokenRevoked?: (claims: TokenClaims) => Promise<boolean> | boolean;
  /** `service` in challenges; default "gateway". */
  service?: string;
  /** Told, once, of the first genuine token refused for its time alone (a sign of clock skew between replicas). */
  log?: (line: string) => void;
  /** Counts the blob and manifest bytes served, per client (the token's `sub`, `device:<uuid>`, `admin`). */
  served?: ServedBytes;
  /** Layer deltas (`GET /v2/<name>/deltas`, deltas.ts): their budgets, or false to turn them off. */
  deltas?: DeltaOptions | false;
}

/**
 * The context key under which the gateway's policy (`authorize`) leaves why it refuses a caller
 * it knows, such as a revoked device's certificate: answered 403 DENIED with that message
 * instead of the 401 challenge, since other credentials would not make that client welcome.
 */
export const REGISTRY_REFUSAL = "registryRefusal";

type Handler = (c: Context, m: RegExpExecArray) => Promise<Response>;

const JSON_HEADERS = { "Content-Type": "application/json" };

/**
 * Builds the registry sub-app; mount it with `app.route("/", createRegistry(...))`.
 *
 * @example
 * ```ts
 * const registry = createRegistry({ root: `${dataDir}/registry`, authorize: (c) => c.get("admin") === true });
 * Bun.serve({ fetch: registry.fetch });
 * ```
 */
export function createRegistry(opts: RegistryOptions): Hono {
  const store = new RegistryStorage(opts.root);
  const uploads = new UploadSessions(store);
  const service = opts.service ?? "gateway";
  const served = opts.served ?? new ServedBytes();
  const deltas = opts.deltas === false ? undefined : new LayerDeltas(store, opts.deltas);

  let lateTokenLogged = false;

  /** Throws 401/403 unless the request may do `action` on `repository`; returns who the caller is. */
  async function authorize(c: Context, repository: string, action: RegistryAccess["action"]): Promise<string> {
    let claims: TokenClaims | undefined;
    let token: string | undefined;
    if (opts.tokenSecret) {
      token = bearerToken(c.req.header("authorization"));
      claims = token ? verifyRegistryToken(opts.tokenSecret, token) : undefined;
      // A token outlives nothing it was issued to: revoked devices and tokens lose it at once.
      if (claims && (await opts.tokenRevoked?.(claims))) claims = undefined;
      if (claims && tokenAllows(claims, { repository, action })) return claims.sub;
    }
    if (await opts.authorize(c, { repository, action })) {
      const device = c.get("device") as { uuid?: string } | undefined;
      return device?.uuid ? `device:${device.uuid}` : c.get("admin") === true ? "admin" : "anonymous";
    }
    const authenticated = claims !== undefined || Boolean(c.get("device")) || c.get("admin") === true;
    const what = repository ? `${action} on "${repository}"` : "registry access";
    const refusal = c.get(REGISTRY_REFUSAL) as string | undefined;
    if (refusal) throw new RegistryRequestError(403, "DENIED", refusal, { repository, action });
    if (authenticated) throw new RegistryRequestError(403, "DENIED", `Access denied: ${what} is not allowed for this client`, { repository, action });
    const scope = repository ? `,scope="repository:${repository}:${action === "push" ? "pull,push" : action}"` : "";
    const challenge = opts.tokenRealm ? `Bearer realm="${opts.tokenRealm}",service="${service}"${scope}` : `Basic realm="${service}"`;
    // A genuine token refused for its time alone says so: replicas' clocks apart, or a token kept too long.
    const late = token && opts.tokenSecret ? tokenTimeRefusal(opts.tokenSecret, token) : undefined;
    if (late && !lateTokenLogged) {
      lateTokenLogged = true;
      opts.log?.(`gateway: registry: ${late} (said once)`);
    }
    throw new RegistryRequestError(401, "UNAUTHORIZED", `Authentication required: ${what}${late ? `: ${late}` : ""}`, { repository, action }, { "WWW-Authenticate": challenge });
  }

  // ---- manifests ----

  const manifests: Handler = async (c, m) => {
    const repo = checkRepositoryName(m[1]!);
    const ref = safeDecode(m[2]!);
    const method = c.req.method;
    if (method === "GET" || method === "HEAD") {
      const client = await authorize(c, repo, "pull");
      const { digest, link, bytes } = await store.getManifest(repo, ref);
      const headers = { "Content-Type": link.mediaType, "Docker-Content-Digest": digest, "Content-Length": String(bytes.byteLength), ETag: `"${digest}"` };
      if (method === "GET") served.add(client, "manifest", bytes.byteLength);
      return new Response(method === "HEAD" ? null : bytes, { status: 200, headers });
    }
    if (method === "PUT") {
      await authorize(c, repo, "push");
      const bytes = await readLimited(c, MAX_MANIFEST_BYTES);
      const { digest, manifest } = await store.putManifest(repo, ref, bytes, c.req.header("content-type"));
      const headers: Record<string, string> = { Location: `/v2/${repo}/manifests/${digest}`, "Docker-Content-Digest": digest };
      if (manifest.subject) headers["OCI-Subject"] = manifest.subject;
      return new Response(null, { status: 201, headers });
    }
    if (method === "DELETE") {
      await authorize(c, repo, "delete");
      await store.deleteManifest(repo, ref);
      return new Response(null, { status: 202 });
    }
    return unsupported(method);
  };

  // ---- blobs ----

  const blobs: Handler = async (c, m) => {
    const repo = checkRepositoryName(m[1]!);
    const digest = safeDecode(m[2]!);
    const method = c.req.method;
    if (method === "GET" || method === "HEAD") {
      const client = await authorize(c, repo, "pull");
      checkDigest(digest);
      const size = await store.blobSize(repo, digest);
      if (size === undefined) throw new RegistryRequestError(404, "BLOB_UNKNOWN", `Blob "${digest}" not found in repository "${repo}"`, { digest });
      const headers: Record<string, string> = {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": digest,
        "Accept-Ranges": "bytes",
        ETag: `"${digest}"`,
        "Cache-Control": "max-age=31536000",
      };
      const range = method === "GET" ? parseRange(c.req.header("range"), size) : undefined;
      const file = Bun.file(store.blobPath(digest));
      const kind = method === "GET" && (await deltas?.isDelta(digest)) ? "delta" : "blob";
      if (range) {
        headers["Content-Range"] = `bytes ${range.start}-${range.end}/${size}`;
        headers["Content-Length"] = String(range.end - range.start + 1);
        return new Response(served.counted(file.slice(range.start, range.end + 1).stream(), client, kind), { status: 206, headers });
      }
      headers["Content-Length"] = String(size);
      return new Response(method === "HEAD" ? null : served.counted(file.stream(), client, kind), { status: 200, headers });
    }
    if (method === "DELETE") {
      await authorize(c, repo, "delete");
      checkDigest(digest);
      if (!(await store.unlinkBlob(repo, digest))) throw new RegistryRequestError(404, "BLOB_UNKNOWN", `Blob "${digest}" not found in repository "${repo}"`, { digest });
      return new Response(null, { status: 202 });
    }
    return unsupported(method);
  };

  // ---- uploads ----

  const uploadLocation = (repo: string, id: string) => `/v2/${repo}/blobs/uploads/${id}`;
  const created = (repo: string, digest: string) =>
    new Response(null, { status: 201, headers: { Location: `/v2/${repo}/blobs/${digest}`, "Docker-Content-Digest": digest, "Content-Length": "0" } });
  const accepted = (repo: string, id: string, size: number, status = 202) =>
    new Response(null, {
      status,
      headers: { Location: uploadLocation(repo, id), "Docker-Upload-UUID": id, ...rangeHeaders(size), "Content-Length": "0" },
    });

  const startUpload: Handler = async (c, m) => {
    const repo = checkRepositoryName(m[1]!);
    if (c.req.method !== "POST") return unsupported(c.req.method);
    await authorize(c, repo, "push");
    const mount = c.req.query("mount");
    const from = c.req.query("from");
    if (mount !== undefined) {
      checkDigest(mount);
      if (from && isRepositoryName(from) && from !== repo) {
        let mayRead = true;
        try {
          await authorize(c, from, "pull");
        } catch (err) {
          if (!(err instanceof RegistryRequestError)) throw err;
          mayRead = false; // fall back to an ordinary upload, as the spec asks
        }
        if (mayRead && (await store.blobSize(from, mount)) !== undefined) {
          await store.linkBlob(repo, mount);
          return created(repo, mount);
        }
      } else if (from === repo && (await store.blobSize(repo, mount)) !== undefined) {
        return created(repo, mount);
      }
    }
    const digest = c.req.query("digest");
    if (digest !== undefined) {
      checkDigest(digest);
      const id = await uploads.start(repo);
      try {
        const result = await uploads.finish(repo, id, digest, c.req.raw.body, contentLength(c));
        return created(repo, result.digest);
      } catch (err) {
        await uploads.cancel(repo, id).catch(() => undefined); // a one-shot upload leaves no session behind
        throw err;
      }
    }
    const id = await uploads.start(repo);
    return accepted(repo, id, 0);
  };

  const upload: Handler = async (c, m) => {
    const repo = checkRepositoryName(m[1]!);
    const id = safeDecode(m[2]!);
    const method = c.req.method;
    if (method === "GET" || method === "HEAD") {
      await authorize(c, repo, "push");
      const size = await uploads.size(repo, id);
      return accepted(repo, id, size, 204);
    }
    if (method === "PATCH") {
      await authorize(c, repo, "push");
      const range = parseUploadRange(c.req.header("content-range"));
      const size = await uploads.append(repo, id, c.req.raw.body, range, contentLength(c));
      return accepted(repo, id, size);
    }
    if (method === "PUT") {
      await authorize(c, repo, "push");
      const digest = c.req.query("digest");
      checkDigest(digest);
      const result = await uploads.finish(repo, id, digest!, c.req.raw.body, contentLength(c));
      return created(repo, result.digest);
    }
    if (method === "DELETE") {
      await authorize(c, repo, "push");
      await uploads.cancel(repo, id);
      return new Response(null, { status: 204 });
    }
    return unsupported(method);
  };

  // ---- tags, referrers, ping ----

  const tags: Handler = async (c, m) => {
    const repo = checkRepositoryName(m[1]!);
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return unsupported(c.req.method);
    await authorize(c, repo, "pull");
    let list = await store.listTags(repo);
    const last = c.req.query("last");
    if (last !== undefined) list = list.filter((t) => t > last);
    const nParam = c.req.query("n");
    const headers: Record<string, string> = { ...JSON_HEADERS };
    if (nParam !== undefined) {
      const n = Number(nParam);
      if (!Number.isSafeInteger(n) || n < 0) throw new RegistryRequestError(400, "UNSUPPORTED", `Invalid n "${nParam}": expected a non-negative integer`);
      if (list.length > n) {
        list = list.slice(0, n);
        if (n > 0) headers.Link = `</v2/${repo}/tags/list?n=${n}&last=${encodeURIComponent(list[n - 1]!)}>; rel="next"`;
      }
    }
    return new Response(JSON.stringify({ name: repo, tags: list }), { status: 200, headers });
  };

  const referrers: Handler = async (c, m) => {
    const repo = checkRepositoryName(m[1]!);
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return unsupported(c.req.method);
    await authorize(c, repo, "pull");
    const digest = safeDecode(m[2]!);
    checkDigest(digest);
    const artifactType = c.req.query("artifactType");
    const list = await store.referrers(repo, digest, artifactType);
    const headers: Record<string, string> = { "Content-Type": OCI_INDEX };
    if (artifactType !== undefined) headers["OCI-Filters-Applied"] = "artifactType";
    return new Response(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: list }), { status: 200, headers });
  };

  /** `GET /v2/<name>/deltas?from=&to=`: the delta's descriptor (made on demand), or 404 with the reason. */
  const delta: Handler = async (c, m) => {
    const repo = checkRepositoryName(m[1]!);
    if (c.req.method !== "GET") return unsupported(c.req.method);
    await authorize(c, repo, "pull");
    const from = c.req.query("from") ?? "";
    const to = c.req.query("to") ?? "";
    if (!deltas) throw new RegistryRequestError(404, "BLOB_UNKNOWN", "No delta: deltas are turned off on this registry");
    const outcome = await deltas.get(repo, from, to);
    if ("refused" in outcome) throw new RegistryRequestError(404, "BLOB_UNKNOWN", `No delta from ${from} to ${to}: ${outcome.refused}`);
    return new Response(JSON.stringify(outcome.descriptor), { status: 200, headers: JSON_HEADERS });
  };

  const ping: Handler = async (c) => {
    await authorize(c, "", "pull");
    return new Response("{}", { status: 200, headers: { ...JSON_HEADERS, "Docker-Distribution-API-Version": "registry/2.0" } });
  };

  const routes: [RegExp, Handler][] = [
    [/^\/v2\/?$/, ping],
    [/^\/v2\/(.+)\/manifests\/([^/]+)$/, manifests],
    [/^\/v2\/(.+)\/blobs\/uploads\/?$/, startUpload],
    [/^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, upload],
    [/^\/v2\/(.+)\/blobs\/([^/]+)$/, blobs],
    [/^\/v2\/(.+)\/tags\/list$/, tags],
    [/^\/v2\/(.+)\/referrers\/([^/]+)$/, referrers],
    [/^\/v2\/(.+)\/deltas$/, delta],
  ];

  const dispatch = async (c: Context): Promise<Response> => {
    const path = new URL(c.req.url).pathname;
    try {
      for (const [re, handler] of routes) {
        const m = re.exec(path);
        if (m) return withApiVersion(await handler(c, m));
      }
      throw new RegistryRequestError(404, "NAME_UNKNOWN", `Not found: ${path.slice(0, 300)} is not a registry endpoint`);
    } catch (err) {
      if (err instanceof RegistryRequestError) return withApiVersion(errorResponse(err));
      throw err;
    }
  };

  return new Hono().all("/v2", dispatch).all("/v2/*", dispatch);
}

/**
 * What `/v2` is on a gateway that is the token realm of an external registry (serve
 * --external-registry-service): no registry. The embedded one's store there is empty and nobody
 * pushes to it, so a device or `gateway publish` given the gateway's host as the registry would
 * read nothing from it, or write images the fleet never sees. Every `/v2` request is answered 404
 * with the OCI error body, naming the registry the gateway issues tokens for and where it is found.
 */
export function externalRegistryOnly(service: string): Hono {
  const answer = () =>
    withApiVersion(
      errorResponse(
        new RegistryRequestError(
          404,
          "UNSUPPORTED",
          `This gateway serves no registry: it issues the tokens of the external registry whose service is "${service}" (gateway serve --external-registry-service ${service}). ` +
            "Push and pull there: at the registry host gateway publish was given (--registry), which the targets' app URIs name (gateway targets list)",
          { service },
        ),
      ),
    );
  return new Hono().all("/v2", answer).all("/v2/*", answer);
}

/** Percent-decodes a path segment; malformed escapes are left as they are (and then fail validation). */
function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function withApiVersion(res: Response): Response {
  res.headers.set("Docker-Distribution-API-Version", "registry/2.0");
  return res;
}

function unsupported(method: string): Response {
  return errorResponse(new RegistryRequestError(405, "UNSUPPORTED", `Method ${method} is not supported on this endpoint`));
}

function contentLength(c: Context): number | undefined {
  const v = c.req.header("content-length");
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** Reads a request body of at most `limit` bytes (413 beyond). */
async function readLimited(c: Context, limit: number): Promise<Uint8Array> {
  const tooBig = () => new RegistryRequestError(413, "SIZE_INVALID", `Manifest refused: larger than ${limit} bytes`);
  const declared = contentLength(c);
  if (declared !== undefined && declared > limit) throw tooBig();
  const body = c.req.raw.body;
  if (!body) return new Uint8Array();
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > limit) throw tooBig();
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}
