/**
 * Our own walk through the OCI distribution-spec conformance checklist (docs/formats.md; the official
 * Go suite cannot be built here), against the embedded registry served by a real Bun.serve on
 * 127.0.0.1 and mounted the way the gateway mounts it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/tmp.ts";
import { ADMIN_PASSWORD, startTestRegistry, type TestRegistry } from "./_server.ts";

const ADMIN = { Authorization: `Basic ${btoa(`ci:${ADMIN_PASSWORD}`)}` };
const sha256 = (b: Uint8Array | string) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) % 251);

let reg: TestRegistry;
let root: string;
const url = (p: string) => `${reg.url}${p}`;
const req = (p: string, init: RequestInit = {}) => fetch(url(p), { ...init, headers: { ...ADMIN, ...(init.headers as Record<string, string>) } });

async function pushBlob(repo: string, data: Uint8Array): Promise<string> {
  const digest = sha256(data);
  const res = await req(`/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: "POST", body: data, headers: { "Content-Type": "application/octet-stream" } });
  expect(res.status).toBe(201);
  return digest;
}

async function pushManifest(repo: string, ref: string, doc: unknown, mediaType = "application/vnd.oci.image.manifest.v1+json"): Promise<{ res: Response; digest: string; body: string }> {
  const body = JSON.stringify(doc, null, 1); // odd formatting: must come back byte-exact
  const res = await req(`/v2/${repo}/manifests/${ref}`, { method: "PUT", body, headers: { "Content-Type": mediaType } });
  return { res, digest: sha256(body), body };
}

const config = new TextEncoder().encode('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
const layer = bytes(2000);

async function pushImage(repo: string, tag: string, extra: Record<string, unknown> = {}) {
  const c = await pushBlob(repo, config);
  const l = await pushBlob(repo, layer);
  return await pushManifest(repo, tag, {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: c, size: config.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: l, size: layer.length }],
    ...extra,
  });
}

beforeAll(async () => {
  root = await tempDir("registry-conformance-");
  reg = await startTestRegistry({ root });
});
afterAll(async () => {
  await reg?.stop();
});

describe("ping", () => {
  test("GET /v2/ answers 200 to an authenticated client", async () => {
    const res = await req("/v2/");
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
  });
  test("GET /v2/ challenges an anonymous client with a Bearer realm", async () => {
    const res = await fetch(url("/v2/"));
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(`Bearer realm="${reg.url}/token",service="gateway"`);
  });
});

describe("blob upload", () => {
  test("POST then PUT ?digest= stores a blob that HEAD and GET then serve", async () => {
    const data = bytes(1234, 2);
    const digest = sha256(data);
    const post = await req("/v2/conf/a/blobs/uploads/", { method: "POST" });
    expect(post.status).toBe(202);
    const loc = post.headers.get("location")!;
    expect(loc).toStartWith("/v2/conf/a/blobs/uploads/");
    expect(post.headers.get("docker-upload-uuid")).toBeTruthy();
    expect(post.headers.get("range")).toBe("0-0");
    const put = await req(`${loc}?digest=${digest}`, { method: "PUT", body: data, headers: { "Content-Type": "application/octet-stream" } });
    expect(put.status).toBe(201);
    expect(put.headers.get("location")).toBe(`/v2/conf/a/blobs/${digest}`);
    expect(put.headers.get("docker-content-digest")).toBe(digest);
    const head = await req(`/v2/conf/a/blobs/${digest}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("1234");
    expect(head.headers.get("docker-content-digest")).toBe(digest);
    const get = await req(`/v2/conf/a/blobs/${digest}`);
    expect(get.status).toBe(200);
    expect(new Uint8Array(await get.arrayBuffer())).toEqual(data);
  });

  test("monolithic POST ?digest= answers 201", async () => {
    const digest = await pushBlob("conf/a", bytes(10, 3));
    expect((await req(`/v2/conf/a/blobs/${digest}`, { method: "HEAD" })).status).toBe(200);
  });

  test("chunked PATCH uploads check order, report progress and finish with PUT", async () => {
    const data = bytes(3000, 4);
    const digest = sha256(data);
    const post = await req("/v2/conf/a/blobs/uploads/", { method: "POST" });
    let loc = post.headers.get("location")!;
    const p1 = await req(loc, { method: "PATCH", body: data.slice(0, 1000), headers: { "Content-Range": "0-999", "Content-Type": "application/octet-stream" } });
    expect(p1.status).toBe(202);
    expect(p1.headers.get("range")).toBe("0-999");
    loc = p1.headers.get("location")!;
    // A gap: the chunk does not start where the upload ends.
    const gap = await req(loc, { method: "PATCH", body: data.slice(1500, 2000), headers: { "Content-Range": "1500-1999" } });
    expect(gap.status).toBe(416);
    expect(gap.headers.get("range")).toBe("0-999");
    const status = await req(loc);
    expect(status.status).toBe(204);
    expect(status.headers.get("range")).toBe("0-999");
    expect(status.headers.get("docker-upload-uuid")).toBeTruthy();
    const p2 = await req(loc, { method: "PATCH", body: data.slice(1000, 2000), headers: { "Content-Range": "1000-1999" } });
    expect(p2.headers.get("range")).toBe("0-1999");
    // Streamed chunk (no Content-Range), as docker sends.
    const p3 = await req(loc, { method: "PATCH", body: data.slice(2000) });
    expect(p3.status).toBe(202);
    expect(p3.headers.get("range")).toBe("0-2999");
    const put = await req(`${loc}?digest=${digest}`, { method: "PUT" });
    expect(put.status).toBe(201);
    const get = await req(`/v2/conf/a/blobs/${digest}`);
    expect(new Uint8Array(await get.arrayBuffer())).toEqual(data);
  });

  test("a PUT with the final chunk in its body completes a chunked upload", async () => {
    const data = bytes(500, 5);
    const post = await req("/v2/conf/a/blobs/uploads/", { method: "POST" });
    const loc = post.headers.get("location")!;
    await req(loc, { method: "PATCH", body: data.slice(0, 200), headers: { "Content-Range": "0-199" } });
    const put = await req(`${loc}?digest=${sha256(data)}`, { method: "PUT", body: data.slice(200), headers: { "Content-Range": "200-499" } });
    expect(put.status).toBe(201);
  });

  test("DELETE cancels an upload session", async () => {
    const post = await req("/v2/conf/a/blobs/uploads/", { method: "POST" });
    const loc = post.headers.get("location")!;
    expect((await req(loc, { method: "DELETE" })).status).toBe(204);
    const after = await req(loc);
    expect(after.status).toBe(404);
    expect((await after.json() as any).errors[0].code).toBe("BLOB_UPLOAD_UNKNOWN");
  });

  test("an upload whose bytes do not match the digest is refused and leaves nothing visible", async () => {
    const data = bytes(4096, 6);
    const wrong = sha256(bytes(4096, 7));
    const res = await req(`/v2/conf/a/blobs/uploads/?digest=${wrong}`, { method: "POST", body: data });
    expect(res.status).toBe(400);
    expect((await res.json() as any).errors[0].code).toBe("DIGEST_INVALID");
    expect((await req(`/v2/conf/a/blobs/${wrong}`, { method: "HEAD" })).status).toBe(404);
    expect((await req(`/v2/conf/a/blobs/${sha256(data)}`, { method: "HEAD" })).status).toBe(404);
    expect(existsSync(join(root, "blobs", "sha256", wrong.slice(7)))).toBe(false);
    expect(existsSync(join(root, "blobs", "sha256", sha256(data).slice(7)))).toBe(false);
    // Same through a session: the session is gone afterwards.
    const post = await req("/v2/conf/a/blobs/uploads/", { method: "POST" });
    const loc = post.headers.get("location")!;
    await req(loc, { method: "PATCH", body: data });
    expect((await req(`${loc}?digest=${wrong}`, { method: "PUT" })).status).toBe(400);
    expect((await req(loc)).status).toBe(404);
    expect(readdirSync(join(root, "uploads")).filter((d) => loc.endsWith(d))).toEqual([]);
  });

  test("an invalid digest is refused with DIGEST_INVALID", async () => {
    const res = await req("/v2/conf/a/blobs/uploads/?digest=sha256:nothex", { method: "POST", body: "x" });
    expect(res.status).toBe(400);
    expect((await res.json() as any).errors[0].code).toBe("DIGEST_INVALID");
  });

  test("cross-repository mount links a blob (201) and falls back to an upload (202) when the source lacks it", async () => {
    const digest = await pushBlob("conf/a", bytes(77, 8));
    const mount = await req(`/v2/conf/b/blobs/uploads/?mount=${digest}&from=conf/a`, { method: "POST" });
    expect(mount.status).toBe(201);
    expect(mount.headers.get("location")).toBe(`/v2/conf/b/blobs/${digest}`);
    expect((await req(`/v2/conf/b/blobs/${digest}`, { method: "HEAD" })).status).toBe(200);
    const missing = sha256("not there");
    const fallback = await req(`/v2/conf/b/blobs/uploads/?mount=${missing}&from=conf/a`, { method: "POST" });
    expect(fallback.status).toBe(202);
    expect(fallback.headers.get("location")).toStartWith("/v2/conf/b/blobs/uploads/");
  });

  test("a repository serves only blobs pushed or mounted into it", async () => {
    const digest = await pushBlob("conf/a", bytes(55, 9));
    const res = await req(`/v2/conf/other/blobs/${digest}`);
    expect(res.status).toBe(404);
    expect((await res.json() as any).errors[0].code).toBe("BLOB_UNKNOWN");
  });
});

describe("blob ranges", () => {
  const data = bytes(2000, 10);
  let digest = "";
  beforeAll(async () => {
    digest = await pushBlob("conf/range", data);
  });
  const get = (range: string) => req(`/v2/conf/range/blobs/${digest}`, { headers: { Range: range } });

  test("bytes=500-1499 answers 206 with those 1000 bytes", async () => {
    const res = await get("bytes=500-1499");
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe("bytes 500-1499/2000");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(data.slice(500, 1500));
  });
  test("bytes=500- answers the tail from byte 500", async () => {
    const res = await get("bytes=500-");
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe("bytes 500-1999/2000");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(data.slice(500));
  });
  test("bytes=-500 answers the last 500 bytes", async () => {
    const res = await get("bytes=-500");
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe("bytes 1500-1999/2000");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(data.slice(1500));
  });
  test("a range past the end answers 416", async () => {
    const res = await get("bytes=2000-");
    expect(res.status).toBe(416);
    expect(res.headers.get("content-range")).toBe("bytes */2000");
  });
});

describe("manifests", () => {
  test("PUT by tag, then GET by tag and by digest return the exact bytes and headers", async () => {
    const { res, digest, body } = await pushImage("conf/img", "v1");
    expect(res.status).toBe(201);
    expect(res.headers.get("docker-content-digest")).toBe(digest);
    expect(res.headers.get("location")).toBe(`/v2/conf/img/manifests/${digest}`);
    for (const ref of ["v1", digest]) {
      const get = await req(`/v2/conf/img/manifests/${ref}`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } });
      expect(get.status).toBe(200);
      expect(await get.text()).toBe(body);
      expect(get.headers.get("content-type")).toBe("application/vnd.oci.image.manifest.v1+json");
      expect(get.headers.get("docker-content-digest")).toBe(digest);
      const head = await req(`/v2/conf/img/manifests/${ref}`, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.headers.get("content-length")).toBe(String(new TextEncoder().encode(body).length));
      expect(head.headers.get("docker-content-digest")).toBe(digest);
    }
  });

  test("PUT by digest stores the manifest untagged", async () => {
    const first = await pushImage("conf/img2", "tmp");
    const put = await req(`/v2/conf/img2/manifests/${first.digest}`, { method: "PUT", body: first.body, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
    expect(put.status).toBe(201);
    const bad = await req(`/v2/conf/img2/manifests/${sha256("other")}`, { method: "PUT", body: first.body, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
    expect(bad.status).toBe(400);
    expect((await bad.json() as any).errors[0].code).toBe("DIGEST_INVALID");
  });

  test("Docker schema2 manifests and manifest lists are accepted with their media type", async () => {
    const c = await pushBlob("conf/docker", config);
    const l = await pushBlob("conf/docker", layer);
    const m = await pushManifest(
      "conf/docker",
      "amd64",
      {
        schemaVersion: 2,
        mediaType: "application/vnd.docker.distribution.manifest.v2+json",
        config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: c, size: config.length },
        layers: [{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: l, size: layer.length }],
      },
      "application/vnd.docker.distribution.manifest.v2+json",
    );
    expect(m.res.status).toBe(201);
    const list = await pushManifest(
      "conf/docker",
      "latest",
      {
        schemaVersion: 2,
        mediaType: "application/vnd.docker.distribution.manifest.list.v2+json",
        manifests: [{ mediaType: "application/vnd.docker.distribution.manifest.v2+json", digest: m.digest, size: m.body.length, platform: { architecture: "amd64", os: "linux" } }],
      },
      "application/vnd.docker.distribution.manifest.list.v2+json",
    );
    expect(list.res.status).toBe(201);
    const get = await req("/v2/conf/docker/manifests/latest");
    expect(get.headers.get("content-type")).toBe("application/vnd.docker.distribution.manifest.list.v2+json");
    expect(await get.text()).toBe(list.body);
  });

  test("an index whose child manifest is missing is refused", async () => {
    const res = await pushManifest("conf/docker", "broken", {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256("nope"), size: 4 }],
    }, "application/vnd.oci.image.index.v1+json");
    expect(res.res.status).toBe(400);
    expect((await res.res.json() as any).errors[0].code).toBe("MANIFEST_BLOB_UNKNOWN");
  });

  test("a manifest whose blobs are missing is refused with MANIFEST_BLOB_UNKNOWN", async () => {
    const c = await pushBlob("conf/missing", config);
    const { res } = await pushManifest("conf/missing", "v1", {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: c, size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256("absent"), size: 6 }],
    });
    expect(res.status).toBe(400);
    const body = await res.json() as any;
    expect(body.errors[0].code).toBe("MANIFEST_BLOB_UNKNOWN");
    expect((await req("/v2/conf/missing/manifests/v1")).status).toBe(404);
  });

  test("malformed and oversized manifests are refused", async () => {
    const bad = await req("/v2/conf/img/manifests/bad", { method: "PUT", body: "{not json", headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
    expect(bad.status).toBe(400);
    expect((await bad.json() as any).errors[0].code).toBe("MANIFEST_INVALID");
    const big = await req("/v2/conf/img/manifests/big", { method: "PUT", body: "x".repeat(4 * 1024 * 1024 + 1), headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
    expect(big.status).toBe(413);
  });

  test("GET of an unknown manifest answers 404 MANIFEST_UNKNOWN", async () => {
    const res = await req("/v2/conf/img/manifests/nope");
    expect(res.status).toBe(404);
    expect((await res.json() as any).errors[0].code).toBe("MANIFEST_UNKNOWN");
    expect((await req(`/v2/conf/img/manifests/${sha256("x")}`)).status).toBe(404);
  });
});

describe("tags list", () => {
  beforeAll(async () => {
    for (const t of ["e", "a", "d", "b", "c"]) await pushImage("conf/tags", t);
  });
  test("lists every tag, sorted", async () => {
    const res = await req("/v2/conf/tags/tags/list");
    expect(await res.json() as any).toEqual({ name: "conf/tags", tags: ["a", "b", "c", "d", "e"] });
  });
  test("paginates with n and last, and links to the next page", async () => {
    const p1 = await req("/v2/conf/tags/tags/list?n=2");
    expect((await p1.json() as any).tags).toEqual(["a", "b"]);
    const link = p1.headers.get("link")!;
    expect(link).toBe('</v2/conf/tags/tags/list?n=2&last=b>; rel="next"');
    const p2 = await req(link.slice(1, link.indexOf(">")));
    expect((await p2.json() as any).tags).toEqual(["c", "d"]);
    const p3 = await req("/v2/conf/tags/tags/list?n=2&last=d");
    expect((await p3.json() as any).tags).toEqual(["e"]);
    expect(p3.headers.get("link")).toBeNull();
  });
  test("an unknown repository answers 404 NAME_UNKNOWN", async () => {
    const res = await req("/v2/conf/nothing/tags/list");
    expect(res.status).toBe(404);
    expect((await res.json() as any).errors[0].code).toBe("NAME_UNKNOWN");
  });
});

describe("referrers", () => {
  test("lists manifests whose subject matches, filtered by artifactType", async () => {
    const subject = await pushImage("conf/ref", "base");
    const subjectDesc = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: subject.digest, size: subject.body.length };
    const empty = await pushBlob("conf/ref", new TextEncoder().encode("{}"));
    const artifact = (type: string) => ({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: type,
      config: { mediaType: "application/vnd.oci.empty.v1+json", digest: empty, size: 2 },
      layers: [{ mediaType: "application/vnd.oci.empty.v1+json", digest: empty, size: 2 }],
      subject: subjectDesc,
      annotations: { "org.example.kind": type },
    });
    const sig = await pushManifest("conf/ref", sha256(JSON.stringify(artifact("application/vnd.example.sig"), null, 1)), artifact("application/vnd.example.sig"));
    expect(sig.res.status).toBe(201);
    expect(sig.res.headers.get("oci-subject")).toBe(subject.digest);
    const sbom = await pushManifest("conf/ref", "sbom", artifact("application/vnd.example.sbom"));
    expect(sbom.res.status).toBe(201);

    const all = await req(`/v2/conf/ref/referrers/${subject.digest}`);
    expect(all.status).toBe(200);
    expect(all.headers.get("content-type")).toBe("application/vnd.oci.image.index.v1+json");
    const index = await all.json() as any;
    expect(index.schemaVersion).toBe(2);
    expect(index.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(index.manifests.map((m: { digest: string }) => m.digest).sort()).toEqual([sig.digest, sbom.digest].sort());
    const sigDesc = index.manifests.find((m: { digest: string }) => m.digest === sig.digest);
    expect(sigDesc).toEqual({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: sig.digest,
      size: new TextEncoder().encode(sig.body).length,
      artifactType: "application/vnd.example.sig",
      annotations: { "org.example.kind": "application/vnd.example.sig" },
    });

    const filtered = await req(`/v2/conf/ref/referrers/${subject.digest}?artifactType=application/vnd.example.sbom`);
    expect(filtered.headers.get("oci-filters-applied")).toBe("artifactType");
    expect((await filtered.json() as any).manifests.map((m: { digest: string }) => m.digest)).toEqual([sbom.digest]);

    // Deleting a referrer removes it from the list.
    expect((await req(`/v2/conf/ref/manifests/${sbom.digest}`, { method: "DELETE" })).status).toBe(202);
    const after = await (await req(`/v2/conf/ref/referrers/${subject.digest}`)).json() as any;
    expect(after.manifests.map((m: { digest: string }) => m.digest)).toEqual([sig.digest]);
  });

  test("an unknown subject has an empty referrers index", async () => {
    const res = await req(`/v2/conf/ref/referrers/${sha256("nothing")}`);
    expect(res.status).toBe(200);
    expect((await res.json() as any).manifests).toEqual([]);
  });
});

describe("deletes", () => {
  test("DELETE by tag removes the tag only; DELETE by digest removes the manifest", async () => {
    const { digest } = await pushImage("conf/del", "v1");
    expect((await req("/v2/conf/del/manifests/v1", { method: "DELETE" })).status).toBe(202);
    expect((await req("/v2/conf/del/manifests/v1")).status).toBe(404);
    expect((await req(`/v2/conf/del/manifests/${digest}`)).status).toBe(200);
    await req(`/v2/conf/del/manifests/v2`, { method: "PUT", body: (await (await req(`/v2/conf/del/manifests/${digest}`)).text()), headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
    expect((await req(`/v2/conf/del/manifests/${digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await req(`/v2/conf/del/manifests/${digest}`)).status).toBe(404);
    expect((await req("/v2/conf/del/manifests/v2")).status).toBe(404);
    expect((await req(`/v2/conf/del/manifests/${digest}`, { method: "DELETE" })).status).toBe(404);
  });
  test("DELETE of a blob removes it from the repository", async () => {
    const digest = await pushBlob("conf/del", bytes(99, 11));
    expect((await req(`/v2/conf/del/blobs/${digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await req(`/v2/conf/del/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    expect((await req(`/v2/conf/del/blobs/${digest}`, { method: "DELETE" })).status).toBe(404);
  });
});

describe("names", () => {
  test("an invalid repository name answers 400 NAME_INVALID", async () => {
    const res = await req("/v2/Bad_Name/tags/list");
    expect(res.status).toBe(400);
    expect((await res.json() as any).errors[0].code).toBe("NAME_INVALID");
  });
});

describe("auth", () => {
  test("an anonymous pull gets 401 with a scoped Bearer challenge", async () => {
    const res = await fetch(url("/v2/conf/img/manifests/v1"));
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(`Bearer realm="${reg.url}/token",service="gateway",scope="repository:conf/img:pull"`);
    expect((await res.json() as any).errors[0].code).toBe("UNAUTHORIZED");
    const push = await fetch(url("/v2/conf/img/blobs/uploads/"), { method: "POST" });
    expect(push.headers.get("www-authenticate")).toContain('scope="repository:conf/img:pull,push"');
  });

  test("a device may pull but gets 403 DENIED on push", async () => {
    const dev = { "x-test-device": "dev-1" };
    expect((await fetch(url("/v2/conf/img/manifests/v1"), { headers: dev })).status).toBe(200);
    const res = await fetch(url("/v2/conf/img/blobs/uploads/"), { method: "POST", headers: dev });
    expect(res.status).toBe(403);
    expect((await res.json() as any).errors[0].code).toBe("DENIED");
  });

  test("wrong credentials get 401", async () => {
    const res = await fetch(url("/v2/conf/img/manifests/v1"), { headers: { Authorization: `Basic ${btoa("ci:wrong")}` } });
    expect(res.status).toBe(401);
  });

  test("tokens from /token grant exactly the allowed scope", async () => {
    const noCreds = await fetch(url("/token?service=gateway&scope=repository:conf/img:pull"));
    expect(noCreds.status).toBe(401);
    const tok = await fetch(url("/token?service=gateway&scope=repository:conf/img:pull,push"), { headers: { Authorization: `Basic ${btoa("bob:reader")}` } });
    expect(tok.status).toBe(200);
    const body = await tok.json() as any;
    expect(body.token).toBe(body.access_token);
    expect(body.expires_in).toBe(300);
    const bearer = { Authorization: `Bearer ${body.token}` };
    expect((await fetch(url("/v2/conf/img/manifests/v1"), { headers: bearer })).status).toBe(200);
    expect((await fetch(url("/v2/"), { headers: bearer })).status).toBe(200);
    const push = await fetch(url("/v2/conf/img/blobs/uploads/"), { method: "POST", headers: bearer });
    expect(push.status).toBe(403);
    const otherRepo = await fetch(url("/v2/conf/docker/manifests/latest"), { headers: bearer });
    expect(otherRepo.status).toBe(403);
    const forged = { Authorization: `Bearer ${body.token.slice(0, -4)}AAAA` };
    expect((await fetch(url("/v2/conf/img/manifests/v1"), { headers: forged })).status).toBe(401);
  });
});

describe("restart", () => {
  test("an upload session resumes on a new registry instance over the same directory", async () => {
    const data = bytes(5000, 12);
    const post = await req("/v2/conf/resume/blobs/uploads/", { method: "POST" });
    const loc = post.headers.get("location")!;
    await req(loc, { method: "PATCH", body: data.slice(0, 3000), headers: { "Content-Range": "0-2999" } });
    const second = await startTestRegistry({ root });
    try {
      const h = { ...ADMIN };
      const status = await fetch(`${second.url}${loc}`, { headers: h });
      expect(status.headers.get("range")).toBe("0-2999");
      const p = await fetch(`${second.url}${loc}`, { method: "PATCH", body: data.slice(3000), headers: { ...h, "Content-Range": "3000-4999" } });
      expect(p.status).toBe(202);
      const put = await fetch(`${second.url}${loc}?digest=${sha256(data)}`, { method: "PUT", headers: h });
      expect(put.status).toBe(201);
      const get = await fetch(`${second.url}/v2/conf/resume/blobs/${sha256(data)}`, { headers: h });
      expect(new Uint8Array(await get.arrayBuffer())).toEqual(data);
    } finally {
      await second.stop();
    }
  });
});
