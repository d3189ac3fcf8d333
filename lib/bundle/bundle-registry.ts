/**
 * An offline bundle seen as a registry: a {@link RegistryClient} whose requests are answered
 * from the bundle's blobs/ instead of the network. Everything above `request()` is the real
 * client (manifest digest checks, Range resume, the blob store's size and digest checks), so a
 * blob from a bundle goes through exactly the verification a blob from the gateway does, and
 * the update steps need no second code path. Only pulls by digest exist here: a bundle has
 * no tags and takes no pushes.
 *
 * A bundle that carries a layer as a delta answers the registry's deltas endpoint
 * (`GET /v2/<name>/deltas?from=&to=`) for that pair with the delta's descriptor, as the gateway
 * does, so fioup's fetch step rebuilds the layer exactly as online (and checks it against the
 * config's diff_id). Such a bundle has no full layer to fall back to: asking for it says so.
 * Its delta is from the layer the `--from` version has, which need not be the base a device would
 * pick from its own history (a rolled-back update, say), so fioup asks {@link BundleRegistry.deltaBaseOf}
 * and, if it holds that base (in its blob store, or in its Docker Engine: found by the base's
 * diff_id, which the bundle records), asks for the bundle's pair.
 *
 * @module
 */
import { tryParseDigest } from "../oci/digest.ts";
import { RegistryClient, RegistryError } from "../oci/registry-client.ts";
import type { RegistryClients } from "../oci/registry-clients.ts";
import { bundleBlobPath, type Bundle, type BundleDelta } from "./format.ts";

type RequestInitOf = Parameters<RegistryClient["request"]>[2];

const ociError = (status: number, code: string, message: string) =>
  Response.json({ errors: [{ code, message }] }, { status, headers: { "content-type": "application/json" } });

/**
 * A registry client for one host whose content comes from a bundle.
 *
 * @example
 * ```ts
 * const reg = new BundleRegistry(await openBundle(dir), "gw.example:8443");
 * await deviceStore.pull(reg, "main/app", { digest, size });
 * ```
 */
export class BundleRegistry extends RegistryClient {
  readonly #bundle: Bundle;
  readonly #mediaTypes: Map<string, string>;
  /** The deltas the bundle carries, by the layer they rebuild. */
  readonly #deltas: Map<string, BundleDelta>;
  /**
   * The layers whose delta fioup asked for. fioup asks only when it holds the delta's base, so
   * a full layer asked for without its delta means the device lacks the base (it runs another
   * version than the bundle's `from`), and one asked for after its delta means the rebuild
   * failed (fioup said why just before): the two call for different remedies.
   */
  readonly #asked = new Set<string>();

  constructor(bundle: Bundle, host: string) {
    super({ registry: host });
    this.#bundle = bundle;
    this.#mediaTypes = new Map(bundle.index.bundle.blobs.map((b) => [b.digest, b.mediaType]));
    this.#deltas = new Map((bundle.index.bundle.deltas ?? []).map((d) => [d.to, d]));
  }

  /**
   * The bundle's own words for what it lacks, without a registry's "returned 404" before them:
   * no registry was asked, and the host named is the gateway the device cannot reach. Status
   * and OCI code stay, so callers decide as they do online.
   */
  override async errorFrom(res: Response, what: string): Promise<RegistryError> {
    const body = (await res.json().catch(() => undefined)) as { errors?: { code?: string; message?: string }[] } | undefined;
    const e = body?.errors?.[0];
    return new RegistryError(`Cannot ${what}: ${e?.message ?? `the offline bundle ${this.#bundle.dir} answered ${res.status}`}`, res.status, e?.code);
  }

  /**
   * The layer the bundle's delta for `layer` rebuilds it from (its digest, and its diff_id when
   * the bundle records it), if the bundle carries `layer` only as a delta.
   */
  deltaBaseOf(layer: string): { digest: string; diffId?: string } | undefined {
    const d = this.#deltas.get(layer);
    return d && { digest: d.from, ...(d.fromDiffId ? { diffId: d.fromDiffId } : {}) };
  }

  /**
   * The delta the bundle carries for `layer` instead of the layer, if it does: its size and the
   * rebuilt tar's (`toSize`) are what a device's blob store receives for that layer.
   */
  deltaOf(layer: string): BundleDelta | undefined {
    return this.#deltas.get(layer);
  }

  /** `GET /v2/<name>/deltas?from=&to=`: the descriptor of a delta the bundle carries for that pair, else 404. */
  #delta(search: URLSearchParams): Response {
    const d = this.#deltas.get(search.get("to") ?? "");
    if (!d || d.from !== search.get("from")) return ociError(404, "BLOB_UNKNOWN", "The offline bundle carries no delta for that pair");
    this.#asked.add(d.to);
    const { registry: _r, repo: _p, fromDiffId: _f, ...descriptor } = d;
    return Response.json(descriptor);
  }

  override async request(method: string, pathOrUrl: string | URL, init: RequestInitOf): Promise<Response> {
    init.signal?.throwIfAborted();
    const url = typeof pathOrUrl === "string" ? new URL(pathOrUrl, "http://bundle") : pathOrUrl;
    const path = url.pathname;
    const m = /^\/v2\/(.+)\/(blobs|manifests)\/([^/]+)$/.exec(path);
    if (method !== "GET" && method !== "HEAD") return ociError(405, "UNSUPPORTED", `An offline bundle only serves pulls, not ${method} ${path}`);
    if (method === "GET" && /^\/v2\/.+\/deltas$/.test(path)) return this.#delta(url.searchParams);
    // Anything else a client may ask a registry (a delta, a tag list) is simply not in the bundle.
    if (!m) return ociError(404, "NAME_UNKNOWN", `An offline bundle serves blobs and manifests by digest only, not ${path}`);
    const [, , kind, ref] = m as unknown as [string, string, "blobs" | "manifests", string];
    const unknown = kind === "blobs" ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN";
    if (!tryParseDigest(ref)) return ociError(404, unknown, `An offline bundle has no tags: ${ref}`);
    const file = Bun.file(bundleBlobPath(this.#bundle.dir, ref));
    if (!(await file.exists())) {
      const from = this.#bundle.index.bundle.from;
      const d = this.#deltas.get(ref);
      if (d) {
        const why = this.#asked.has(ref)
          ? "and the layer did not rebuild here from it (the reason is on the line above: too little free memory, a delta claiming or rebuilding more than the signed layer unpacks to, or rebuilt bytes that do not match the image config's diff_id)"
          : `and the device does not hold that layer, neither in its blob store nor in its Docker Engine (a device on another version than ${from} lacks it)`;
        return ociError(404, unknown, `The offline bundle ${this.#bundle.dir} carries layer ${ref} only as a delta from layer ${d.from} (of version ${from}), ${why}; the bundle has no full layer to fall back to (export one with --no-deltas)`);
      }
      return ociError(404, unknown, `The offline bundle ${this.#bundle.dir} lacks ${ref}${from ? ` (it was made for devices on version ${from})` : ""}`);
    }
    const size = file.size;
    const headers: Record<string, string> = { "docker-content-digest": ref, "accept-ranges": "bytes" };
    if (kind === "manifests") {
      headers["content-type"] = this.#mediaTypes.get(ref) ?? "application/vnd.oci.image.manifest.v1+json";
    } else headers["content-type"] = "application/octet-stream";
    const range = /^bytes=(\d+)-(\d*)$/.exec(init.headers?.range ?? "");
    if (range && kind === "blobs") {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size || end < start) return ociError(416, "RANGE_INVALID", `Range ${init.headers!.range} is outside the ${size} bytes of ${ref}`);
      headers["content-range"] = `bytes ${start}-${end}/${size}`;
      headers["content-length"] = String(end - start + 1);
      return new Response(method === "HEAD" ? null : file.slice(start, end + 1).stream(), { status: 206, headers });
    }
    headers["content-length"] = String(size);
    return new Response(method === "HEAD" ? null : file.stream(), { status: 200, headers });
  }
}

/**
 * Registry clients that answer every host from the bundle (the bundle is content-addressed:
 * the host and repository an app names only matter for the messages).
 */
export function bundleRegistries(bundle: Bundle): RegistryClients {
  const cache = new Map<string, BundleRegistry>();
  return (host) => {
    let c = cache.get(host);
    if (!c) cache.set(host, (c = new BundleRegistry(bundle, host)));
    return c;
  };
}
