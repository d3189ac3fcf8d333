import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { startDockerRegistry } from "./docker-registry.ts";
import { bridgesIn, removeBridges, startDockerd } from "./dockerd.ts";
import { startLoopDockerd } from "./loop-dockerd.ts";
import { buildBusyboxImage, busyboxImageTar, writeOciLayout } from "./images.ts";
import { startGateway } from "./gateway.ts";
import { startMosquitto } from "./mosquitto.ts";
import { startPostgres } from "./postgres.ts";
import { freePort, pidAlive, run, tempDir } from "./tmp.ts";

setDefaultTimeout(60_000);

const httpd = {
  files: { "/var/www/index.html": "hello from busybox\n" },
  cmd: ["httpd", "-f", "-p", "80", "-h", "/var/www"],
  exposedPorts: ["80/tcp"],
};

describe("images", () => {
  test("busyboxImageTar is deterministic: same options give the same digests", async () => {
    const a = await buildBusyboxImage(httpd);
    const b = await buildBusyboxImage(httpd);
    expect(a.configDigest).toBe(b.configDigest);
    expect(a.manifestDigest).toBe(b.manifestDigest);
    const c = await buildBusyboxImage({ ...httpd, files: { "/var/www/index.html": "other" } });
    expect(c.configDigest).not.toBe(a.configDigest);
  });

  test("writeOciLayout with platforms writes an image index with one manifest per platform", async () => {
    const dir = await tempDir("oci-");
    const res = await writeOciLayout(dir, { ...httpd, platforms: ["linux/amd64", "linux/arm64"] });
    expect(res.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    const index = JSON.parse(await Bun.file(`${dir}/blobs/sha256/${res.digest.slice(7)}`).text());
    expect(index.manifests.map((m: any) => m.platform.architecture)).toEqual(["amd64", "arm64"]);
    const cfg = JSON.parse(new TextDecoder().decode(res.images[1]!.config));
    expect(cfg.architecture).toBe("arm64");
  });
});

describe("watchdog", () => {
  test("a process killed without stop() has its services killed and temp dirs removed", async () => {
    const res = await run([process.execPath, `${import.meta.dir}/fixtures/forget-registry.ts`], { allowFail: true });
    const { pid, dir } = JSON.parse(res.stdout) as { pid: number; dir: string };
    let gone = false;
    for (let i = 0; i < 150 && !gone; i++) {
      gone = !pidAlive(pid) && !existsSync(dir);
      if (!gone) await Bun.sleep(100);
    }
    expect({ alive: pidAlive(pid), dirExists: existsSync(dir) }).toEqual({ alive: false, dirExists: false });
  });
});

describe("docker-registry", () => {
  test("skopeo pushes an OCI layout to a registry with htpasswd auth, and anonymous access is refused", async () => {
    const reg = await startDockerRegistry({ htpasswd: { user: "ci", password: "s3cret" } });
    try {
      expect((await fetch(`${reg.url}/v2/`)).status).toBe(401);
      const dir = await tempDir("oci-");
      const img = await writeOciLayout(dir, { ...httpd, tag: "test/httpd:1" });
      await run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "ci:s3cret", `oci:${dir}:1`, `docker://${reg.host}/test/httpd:1`]);
      const res = await fetch(`${reg.url}/v2/test/httpd/manifests/1`, {
        headers: { authorization: `Basic ${btoa("ci:s3cret")}`, accept: "application/vnd.oci.image.manifest.v1+json" },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("docker-content-digest")).toBe(img.digest);
    } finally {
      await reg.stop();
    }
  });
});

describe("dockerd", () => {
  test("runs a loaded busybox image whose port published on 127.0.0.1 answers", async () => {
    const dockerd = await startDockerd();
    try {
      const tag = `harness/httpd:${process.pid}`;
      const tar = await busyboxImageTar({ ...httpd, tag });
      await dockerd.docker("load", "-i", tar);
      const id = (await dockerd.docker("image", "inspect", "-f", "{{.Id}}", tag)).trim();
      expect(id).toBe((await buildBusyboxImage({ ...httpd, tag })).configDigest);
      const port = await freePort();
      const name = `harness-httpd-${process.pid}`;
      await dockerd.docker("run", "-d", "--name", name, "-p", `127.0.0.1:${port}:80`, tag);
      try {
        let body = "";
        for (let i = 0; i < 50 && !body; i++) {
          body = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) }).then((r) => r.text(), () => "");
          if (!body) await Bun.sleep(100);
        }
        expect(body).toBe("hello from busybox\n");
      } finally {
        await dockerd.docker("rm", "-f", name);
      }
    } finally {
      await dockerd.stop();
    }
  });

  test("docker-compose brings up an app on its own network with a published port", async () => {
    const dockerd = await startDockerd();
    const tag = `harness/httpd-compose:${process.pid}`;
    await dockerd.docker("load", "-i", await busyboxImageTar({ ...httpd, tag }));
    const dir = await tempDir("compose-");
    const port = await freePort();
    await Bun.write(`${dir}/docker-compose.yml`, `version: "3"\nservices:\n  web:\n    image: ${tag}\n    ports: ["127.0.0.1:${port}:80"]\n`);
    const project = `harness${process.pid}`;
    const env = { ...dockerd.env };
    try {
      await run(["docker-compose", "-p", project, "up", "-d"], { cwd: dir, env });
      let body = "";
      for (let i = 0; i < 50 && !body; i++) {
        body = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) }).then((r) => r.text(), () => "");
        if (!body) await Bun.sleep(100);
      }
      expect(body).toBe("hello from busybox\n");
    } finally {
      await run(["docker-compose", "-p", project, "down", "-t", "1"], { cwd: dir, env, allowFail: true });
      await dockerd.stop();
    }
  });

  test("an image that is not local fails fast", async () => {
    const dockerd = await startDockerd();
    try {
      const t0 = Date.now();
      const res = await run(["docker", "pull", "example.invalid/nothing:1"], { env: dockerd.env, allowFail: true });
      expect(res.code).not.toBe(0);
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      await dockerd.stop();
    }
  });
});

// A stopped dockerd leaves its networks' bridges, and their routes, behind: left to pile up over
// runs they filled the test pool and a CI run failed 11 tests ("could not find an available,
// non-overlapping IPv4 address pool").
describe("dockerd bridges", () => {
  test("bridgesIn finds the br-* bridges with an address in a CIDR, and removeBridges deletes them", async () => {
    const name = `br-h${process.pid}`.slice(0, 15);
    await run(["ip", "link", "add", name, "type", "bridge"]);
    try {
      await run(["ip", "addr", "add", `10.203.${process.pid % 250}.1/24`, "dev", name]);
      expect(await bridgesIn("10.203.0.0/16")).toContain(name);
      expect(await bridgesIn(`10.203.${process.pid % 250}.0/24`)).toContain(name);
      expect(await bridgesIn("10.204.0.0/16")).not.toContain(name);
      await removeBridges([name]);
      expect((await run(["ip", "link", "show", name], { allowFail: true })).code).not.toBe(0);
    } finally {
      await run(["ip", "link", "delete", name], { allowFail: true });
    }
  });

  test("a small-disk dockerd's stop removes the bridges of its networks", async () => {
    const small = await startLoopDockerd({ sizeMiB: 256 });
    let bridge = "";
    try {
      const id = (await small.docker("network", "create", `h${process.pid}`)).trim();
      bridge = `br-${id.slice(0, 12)}`;
      expect((await run(["ip", "link", "show", bridge], { allowFail: true })).code).toBe(0);
    } finally {
      await small.stop();
    }
    expect((await run(["ip", "link", "show", bridge], { allowFail: true })).code).not.toBe(0);
  });
});

describe("postgres", () => {
  test("startPostgres serves SQL on 127.0.0.1 and createDatabase gives an empty database", async () => {
    const pg = await startPostgres();
    try {
      const url = await pg.createDatabase("harness_t1");
      const res = await run(["psql", url, "-tAc", "select current_database(), inet_server_addr()"]);
      expect(res.stdout.trim()).toBe("harness_t1|127.0.0.1");
    } finally {
      await pg.stop();
    }
  });
});

describe("mosquitto", () => {
  test("startMosquitto delivers a retained message to a subscriber", async () => {
    const mqtt = await startMosquitto();
    try {
      await run(["mosquitto_pub", "-h", "127.0.0.1", "-p", String(mqtt.port), "-t", "harness/t", "-r", "-m", "hi"]);
      const res = await run(["mosquitto_sub", "-h", "127.0.0.1", "-p", String(mqtt.port), "-t", "harness/t", "-C", "1", "-W", "5"]);
      expect(res.stdout.trim()).toBe("hi");
    } finally {
      await mqtt.stop();
    }
  });
});

describe("gateway", () => {
  test("startGateway serves HTTPS with its CA, and a restart after kill keeps the URL and the admin token", async () => {
    const gw = await startGateway();
    let again: Awaited<ReturnType<typeof startGateway>> | undefined;
    try {
      expect((await gw.adminFetch("/admin/devices")).status).toBe(200);
      await gw.kill();
      again = await startGateway({ dataDir: gw.dataDir });
      expect(again.url).toBe(gw.url);
      expect(again.adminToken).toBe(gw.adminToken);
      expect((await again.adminFetch("/admin/devices")).status).toBe(200);
    } finally {
      await gw.stop();
      await again?.stop();
    }
  });
});
