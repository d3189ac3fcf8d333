import { afterAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, rm, symlink, truncate, utimes, writeFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import tar from "tar-stream";
import { extractBundle } from "./extract.ts";
import { MAX_BUNDLE_FILE_BYTES } from "./app-format.ts";
import { BundleTooLargeError, createBundle, IgnoredComposeFileError, UnsupportedFileError } from "./bundle.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "bundle-test-"));
  dirs.push(d);
  return d;
}

async function app(files: Record<string, string>, dir?: string): Promise<string> {
  const d = dir ?? (await tmp());
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(d, p, ".."), { recursive: true });
    await writeFile(join(d, p), c);
  }
  return d;
}

interface TarEntry { name: string; type: string; mode: number; uid: number; gid: number; mtime: number; uname: string; gname: string; body: string }

async function readTgz(path: string): Promise<TarEntry[]> {
  const ex = tar.extract();
  const out: TarEntry[] = [];
  const p = (async () => {
    for await (const e of ex) {
      const chunks: Buffer[] = [];
      for await (const c of e) chunks.push(c as Buffer);
      const h = e.header;
      out.push({ name: h.name, type: h.type!, mode: h.mode!, uid: h.uid!, gid: h.gid!, mtime: h.mtime!.getTime(), uname: h.uname ?? "", gname: h.gname ?? "", body: Buffer.concat(chunks).toString() });
    }
  })();
  ex.end(gunzipSync(await Bun.file(path).arrayBuffer()));
  await p;
  return out;
}

const PINNED = "services:\n  app:\n    image: 127.0.0.1:1/main/simple-app@sha256:" + "a".repeat(64) + "\n";

describe("createBundle", () => {
  test("ships the pinned compose file, leaves out ignored files and the ignore file", async () => {
    const d = await app({
      "docker-compose.yml": "services:\n  app:\n    build: .\n",
      Dockerfile: "FROM busybox\n",
      "app.py": "print(1)\n",
      ".composeappignores": "Dockerfile\napp.py\n",
      "conf/nginx.conf": "server {}\n",
    });
    const out = join(await tmp(), "b.tgz");
    const b = await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: out });
    expect(b.entries).toEqual(["conf/", "conf/nginx.conf", "docker-compose.yml"]);
    const entries = await readTgz(out);
    expect(entries.map((e) => e.name)).toEqual(["conf/", "conf/nginx.conf", "docker-compose.yml"]);
    expect(entries.find((e) => e.name === "docker-compose.yml")!.body).toBe(PINNED);
    for (const e of entries) {
      expect([e.uid, e.gid, e.mtime, e.uname, e.gname]).toEqual([0, 0, 0, "", ""]);
      expect(e.mode).toBe(e.type === "directory" ? 0o755 : 0o644);
    }
    expect(Object.keys(b.index)).toEqual(["conf/nginx.conf", "docker-compose.yml"]);
    expect(b.index["docker-compose.yml"]).toBe("sha256:" + new Bun.CryptoHasher("sha256").update(PINNED).digest("hex"));
    expect(new TextDecoder().decode(b.indexBytes)).toBe(JSON.stringify(b.index));
    expect(b.digest).toBe("sha256:" + new Bun.CryptoHasher("sha256").update(await Bun.file(out).arrayBuffer()).digest("hex"));
    expect(b.size).toBe(Bun.file(out).size);
  });

  test("the same content gives the same bytes whatever the mtimes, modes and creation order", async () => {
    const a = await app({ "docker-compose.yml": "x", "b/z.txt": "z", "a.txt": "a", "run.sh": "#!/bin/sh\n" });
    const b = await app({ "run.sh": "#!/bin/sh\n", "a.txt": "a", "b/z.txt": "z", "docker-compose.yml": "y" });
    await chmod(join(a, "run.sh"), 0o700);
    await chmod(join(b, "run.sh"), 0o775);
    await chmod(join(b, "a.txt"), 0o600);
    await utimes(join(b, "a.txt"), new Date(1e12), new Date(1e12));
    const o = await tmp();
    const ba = await createBundle(a, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "a.tgz") });
    const bb = await createBundle(b, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz") });
    expect(ba.digest).toBe(bb.digest);
    expect(ba.indexDigest).toBe(bb.indexDigest);
    const modes = Object.fromEntries((await readTgz(join(o, "a.tgz"))).map((e) => [e.name, e.mode]));
    expect(modes["run.sh"]).toBe(0o755);
    expect(modes["a.txt"]).toBe(0o644);
  });

  test("a compose.yml app ships its pinned file as docker-compose.yml", async () => {
    const d = await app({ "compose.yml": "services: {}\n", "x.txt": "x" });
    const b = await createBundle(d, { composeFileName: "compose.yml", composeText: PINNED, outFile: join(await tmp(), "b.tgz") });
    expect(b.entries).toEqual(["docker-compose.yml", "x.txt"]);
  });

  test("re-included files inside an excluded directory are shipped", async () => {
    const d = await app({ "docker-compose.yml": "x", "secret/key": "k", "secret/public.txt": "p", ".composeappignores": "secret\n!secret/public.txt\n" });
    const b = await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(await tmp(), "b.tgz") });
    expect(b.entries).toEqual(["docker-compose.yml", "secret/", "secret/public.txt"]);
  });

  test("paths the caller excludes stay out whatever .composeappignores re-includes, taken literally", async () => {
    const d = await app({ "docker-compose.yml": "x", ".env": "PASS=hunter2", "a*.txt": "star", "ab.txt": "ab", "local/key": "k", "local/public.txt": "p", ".composeappignores": "!local/public.txt\n" });
    const b = await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(await tmp(), "b.tgz"), exclude: [".env", "a*.txt", "local/"] });
    expect(b.entries).toEqual(["ab.txt", "docker-compose.yml"]);
  });

  test("an excluded .composeappignores does not apply, and an excluded compose file is an error", async () => {
    const d = await app({ "docker-compose.yml": "x", "app.sh": "echo", ".composeappignores": "app.sh\n" });
    const b = await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(await tmp(), "b.tgz"), exclude: [".composeappignores"] });
    expect(b.entries).toEqual(["app.sh", "docker-compose.yml"]);
    await expect(createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(await tmp(), "b.tgz"), exclude: ["docker-compose.yml"] })).rejects.toThrow(IgnoredComposeFileError);
  });

  test("an ignore rule removing the compose file is an error and writes nothing", async () => {
    const d = await app({ "docker-compose.yml": "x", ".composeappignores": "*.yml\n" });
    const o = await tmp();
    await expect(createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz") })).rejects.toThrow(IgnoredComposeFileError);
    expect(await readdir(o)).toEqual([]);
  });

  test("symlinks are refused unless ignored", async () => {
    const d = await app({ "docker-compose.yml": "x" });
    await symlink("/etc/passwd", join(d, "link"));
    const o = await tmp();
    await expect(createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz") })).rejects.toThrow(UnsupportedFileError);
    await writeFile(join(d, ".composeappignores"), "link\n");
    const b = await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz") });
    expect(b.entries).toEqual(["docker-compose.yml"]);
  });

  test("a bundle over the size limit is refused and leaves nothing behind", async () => {
    const d = await app({ "docker-compose.yml": "x" });
    await writeFile(join(d, "random.bin"), crypto.getRandomValues(new Uint8Array(60_000)));
    const o = await tmp();
    await expect(createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz"), maxBytes: 10_000 })).rejects.toThrow(BundleTooLargeError);
    expect(await readdir(o)).toEqual([]);
  });

  test("a file larger than a device extracts is refused when the bundle is made (every device would refuse it at install), naming it and the way out", async () => {
    const d = await app({ "docker-compose.yml": "x" });
    await writeFile(join(d, "blob.bin"), "");
    await truncate(join(d, "blob.bin"), MAX_BUNDLE_FILE_BYTES + 1); // sparse: nothing is written
    const o = await tmp();
    const made = createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz") });
    await expect(made).rejects.toThrow(BundleTooLargeError);
    await expect(made).rejects.toThrow(/blob\.bin is 256\.0 MiB, over the 256\.0 MiB a device extracts from an app's bundle per file; list it in \.composeappignores/);
    expect(await readdir(o)).toEqual([]);
    // One that fits is shipped, and extracts.
    await truncate(join(d, "blob.bin"), 1 << 20);
    await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz") });
  });

  test("large files stream through with a correct index", async () => {
    const d = await app({ "docker-compose.yml": "x" });
    const big = crypto.getRandomValues(new Uint8Array(65536)).map((x, i) => x ^ i);
    const data = new Uint8Array(5 * 1024 * 1024);
    for (let i = 0; i < data.length; i += big.length) data.set(big, i);
    await writeFile(join(d, "big.bin"), data);
    const out = join(await tmp(), "b.tgz");
    const b = await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: out });
    expect(b.index["big.bin"]).toBe("sha256:" + new Bun.CryptoHasher("sha256").update(data).digest("hex"));
    const e = (await readTgz(out)).find((x) => x.name === "big.bin")!;
    expect(e.body.length).toBeGreaterThan(0);
  });
});

describe("createBundle → extractBundle (the device side)", () => {
  test("a published bundle extracts on the device to the same files, checked against its index", async () => {
    const d = await app({
      "docker-compose.yml": "services: {}\n",
      "conf/nginx.conf": "server {}\n",
      "conf/deep/x.txt": "x",
      "run.sh": "#!/bin/sh\necho hi\n",
      "Dockerfile": "FROM x\n",
      ".composeappignores": "Dockerfile\n",
    });
    await chmod(join(d, "run.sh"), 0o755);
    const o = await tmp();
    const b = await createBundle(d, { composeFileName: "docker-compose.yml", composeText: PINNED, outFile: join(o, "b.tgz") });
    const dest = join(o, "apps", "myapp");
    await mkdir(join(o, "apps"));
    const r = await extractBundle({ bundle: b.path, index: b.index, dest });
    expect(r.files).toBe(4);
    expect(await Bun.file(join(dest, "docker-compose.yml")).text()).toBe(PINNED);
    expect(await Bun.file(join(dest, "conf/deep/x.txt")).text()).toBe("x");
    expect(await Bun.file(join(dest, "Dockerfile")).exists()).toBe(false);
    expect(await Bun.file(join(dest, ".composeappignores")).exists()).toBe(false);
  });
});
