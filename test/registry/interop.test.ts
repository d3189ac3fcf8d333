/**
 * Interoperability with real clients: skopeo pushes an OCI layout into the embedded registry
 * and copies it back out unchanged (through the Docker token flow), a private dockerd pulls
 * by tag and by digest after `docker login`, and clients without (enough) credentials are
 * refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { writeOciLayout, type OciLayoutResult } from "../harness/images.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { ADMIN_PASSWORD, startTestRegistry, type TestRegistry } from "./_server.ts";

let reg: TestRegistry;
let layout: string;
let image: OciLayoutResult;
let multi: string;
let multiImage: OciLayoutResult;
const CREDS = `ci:${ADMIN_PASSWORD}`;

const skopeo = (args: string[], allowFail = false) => run(["skopeo", "--insecure-policy", ...args], { allowFail });

beforeAll(async () => {
  reg = await startTestRegistry({ root: await tempDir("registry-interop-") });
  layout = await tempDir("oci-src-");
  image = await writeOciLayout(layout, { tag: "interop/app:1", files: { "/etc/motd": "hello from the registry test\n" }, cmd: ["sleep", "3600"] });
  multi = await tempDir("oci-multi-");
  multiImage = await writeOciLayout(multi, { tag: "interop/multi:1", platforms: ["linux/amd64", "linux/arm64"] });
});
afterAll(async () => {
  await reg?.stop();
});

/** The manifest digest an OCI layout's index.json points at. */
function layoutDigest(dir: string): string {
  return JSON.parse(readFileSync(join(dir, "index.json"), "utf8")).manifests[0].digest;
}

describe("skopeo", () => {
  test("copies an image in and back out unchanged", async () => {
    await skopeo(["copy", "--dest-tls-verify=false", "--dest-creds", CREDS, `oci:${layout}:1`, `docker://${reg.host}/interop/app:1`]);
    const inspect = await skopeo(["inspect", "--raw", "--tls-verify=false", "--creds", CREDS, `docker://${reg.host}/interop/app:1`]);
    expect(`sha256:${new Bun.CryptoHasher("sha256").update(inspect.stdout).digest("hex")}`).toBe(image.digest);
    const out = await tempDir("oci-out-");
    await skopeo(["copy", "--src-tls-verify=false", "--src-creds", CREDS, `docker://${reg.host}/interop/app:1`, `oci:${out}:1`]);
    expect(layoutDigest(out)).toBe(image.digest);
    for (const d of [image.images[0]!.configDigest, ...image.images[0]!.layers.map((l) => l.digest)]) {
      const hex = d.slice(7);
      expect(readFileSync(join(out, "blobs", "sha256", hex))).toEqual(readFileSync(join(layout, "blobs", "sha256", hex)));
    }
  });

  test("copies a multi-platform index with --all and by digest", async () => {
    await skopeo(["copy", "--all", "--dest-tls-verify=false", "--dest-creds", CREDS, `oci:${multi}:1`, `docker://${reg.host}/interop/multi:1`]);
    const out = await tempDir("oci-multi-out-");
    await skopeo(["copy", "--all", "--src-tls-verify=false", "--src-creds", CREDS, `docker://${reg.host}/interop/multi@${multiImage.digest}`, `oci:${out}`]);
    expect(layoutDigest(out)).toBe(multiImage.digest);
  });

  test("copies between two repositories of the registry", async () => {
    await skopeo(["copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", CREDS, "--dest-creds", CREDS, `docker://${reg.host}/interop/app:1`, `docker://${reg.host}/interop/copy:1`]);
    const inspect = await skopeo(["inspect", "--raw", "--tls-verify=false", "--creds", CREDS, `docker://${reg.host}/interop/copy:1`]);
    expect(`sha256:${new Bun.CryptoHasher("sha256").update(inspect.stdout).digest("hex")}`).toBe(image.digest);
  });

  test("a client without credentials is refused", async () => {
    const out = await tempDir("oci-anon-");
    const res = await skopeo(["copy", "--src-tls-verify=false", "--src-no-creds", `docker://${reg.host}/interop/app:1`, `oci:${out}:1`], true);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/unauthorized|authentication required/i);
  });

  test("a client allowed only to pull cannot push", async () => {
    const res = await skopeo(["copy", "--dest-tls-verify=false", "--dest-creds", "bob:reader", `oci:${layout}:1`, `docker://${reg.host}/interop/bob:1`], true);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/denied/i);
    const pull = await skopeo(["inspect", "--raw", "--tls-verify=false", "--creds", "bob:reader", `docker://${reg.host}/interop/app:1`]);
    expect(pull.code).toBe(0);
  });
});

describe("dockerd", () => {
  let dockerd: DockerdHandle;
  let config: string;
  const pulled: string[] = [];
  beforeAll(async () => {
    dockerd = await startDockerd();
    config = await tempDir("docker-config-");
    if (!(await fetch(`${reg.url}/v2/interop/app/manifests/1`, { method: "HEAD", headers: { Authorization: `Basic ${btoa(CREDS)}` } })).ok) {
      await skopeo(["copy", "--dest-tls-verify=false", "--dest-creds", CREDS, `oci:${layout}:1`, `docker://${reg.host}/interop/app:1`]);
    }
  }, 120_000);
  afterAll(async () => {
    for (const ref of pulled) await run(["docker", "rmi", "-f", ref], { env: dockerd.env, allowFail: true });
    await dockerd?.stop();
  }, 120_000);

  test("pulls by tag and by digest after docker login (token flow)", async () => {
    await run(["docker", "--config", config, "login", "-u", "ci", "--password-stdin", reg.host], { env: dockerd.env, stdin: ADMIN_PASSWORD });
    const byTag = `${reg.host}/interop/app:1`;
    const byDigest = `${reg.host}/interop/app@${image.digest}`;
    await dockerd.docker("--config", config, "pull", byTag);
    pulled.push(byTag);
    await dockerd.docker("--config", config, "pull", byDigest);
    pulled.push(byDigest);
    const inspect = JSON.parse(await dockerd.docker("image", "inspect", byDigest))[0];
    expect(inspect.Id).toBe(image.images[0]!.configDigest);
    expect(inspect.RepoDigests).toContain(`${reg.host}/interop/app@${image.digest}`);
  });

  test("pushes an image with docker push (streamed PATCH uploads)", async () => {
    const src = `${reg.host}/interop/app:1`;
    const dest = `${reg.host}/interop/pushed:1`;
    await dockerd.docker("--config", config, "pull", src);
    await dockerd.docker("tag", src, dest);
    pulled.push(dest);
    await dockerd.docker("--config", config, "push", dest);
    const raw = await skopeo(["inspect", "--raw", "--tls-verify=false", "--creds", CREDS, `docker://${dest}`]);
    expect(JSON.parse(raw.stdout).config.digest).toBe(image.images[0]!.configDigest);
  });

  test("refuses a pull without credentials", async () => {
    const empty = await tempDir("docker-noauth-");
    const res = await run(["docker", "--config", empty, "pull", `${reg.host}/interop/app:1`], { env: dockerd.env, allowFail: true });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/unauthorized|authentication required|no basic auth/i);
  });
});
