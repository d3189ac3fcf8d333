import { expect, test } from "bun:test";
import { cpSync, existsSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sleep, tempDir } from "../test/harness/tmp.ts";
import { DataDirError, lockDataDir, openDataDir, readServeInfo, servingPid, writeServeInfo } from "./data-dir.ts";
import { RegistryJwtSigner } from "./registry/jwt.ts";

const hosts = ["127.0.0.1"];

test("the built-in registry's token secret survives the external registry's signer and a restart", async () => {
  const dir = await tempDir("data-dir-");
  const first = await openDataDir(dir, { factory: "main", hosts });
  // --external-registry-service: the JWT signer makes its key and certificate in pki/ on first use.
  await RegistryJwtSigner.open(join(dir, "pki"), "main");
  const again = await openDataDir(dir, { factory: "main", hosts });
  // Bearer tokens the registry issued before the restart still verify with the same secret.
  expect(again.registrySecret).toBe(first.registrySecret);
  expect(again.registrySecret).not.toContain("BEGIN");
  // And the signer's key is still its own (the registry trusts its certificate).
  expect(readFileSync(join(dir, "pki", "registry-token.key"), "utf8")).toContain("PRIVATE KEY");
});

test("copies of a data dir whose old secret file the signer had taken agree on the new secret, and keep the signer's key", async () => {
  const dir = await tempDir("data-dir-");
  await openDataDir(dir, { factory: "main", hosts });
  await RegistryJwtSigner.open(join(dir, "pki"), "main");
  // The layout before, after the signer overwrote the secret's file: no registry-secret.key.
  await Bun.file(join(dir, "pki", "registry-secret.key")).delete();
  const keyPem = readFileSync(join(dir, "pki", "registry-token.key"), "utf8");
  const copy = await tempDir("data-dir-copy-");
  await Bun.$`cp -a ${dir}/. ${copy}/`.quiet();
  const [a, b] = [await openDataDir(dir, { factory: "main", hosts }), await openDataDir(copy, { factory: "main", hosts })];
  expect(a.registrySecret).toBe(b.registrySecret);
  expect(a.registrySecret).not.toContain("BEGIN");
  expect(readFileSync(join(dir, "pki", "registry-token.key"), "utf8")).toBe(keyPem);
});

test("a data dir from before keeps its registry token secret", async () => {
  const dir = await tempDir("data-dir-");
  await openDataDir(dir, { factory: "main", hosts });
  // The layout before: the secret in pki/registry-token.key, no JWT signer.
  const secretFile = join(dir, "pki", "registry-secret.key");
  const old = readFileSync(secretFile, "utf8").trim();
  writeFileSync(join(dir, "pki", "registry-token.key"), old + "\n", { mode: 0o600 });
  await Bun.file(secretFile).delete();
  const d = await openDataDir(dir, { factory: "main", hosts });
  expect(d.registrySecret).toBe(old);
  expect(existsSync(join(dir, "pki", "registry-token.key"))).toBe(false); // moved, so the signer never reads it as its key
});

test("a data dir that is a file, and a garbled serve.json, are errors that name the path", async () => {
  const dir = await tempDir("data-dir-");
  writeFileSync(join(dir, "file"), "");
  await expect(lockDataDir(join(dir, "file"))).rejects.toThrow(`Cannot use ${join(dir, "file")} as the data dir: it, or a directory above it, is a file`);
  await expect(lockDataDir(join(dir, "file", "below"))).rejects.toThrow(DataDirError);
  writeFileSync(join(dir, "serve.json"), "{garbage");
  await expect(readServeInfo(dir)).rejects.toThrow(`Cannot read ${join(dir, "serve.json")}: it is not JSON`);
});

test("a damaged factory.json, CA or server certificate is an error that names the file, and nothing is replaced", async () => {
  const dir = join(await tempDir("data-dir-"), "data");
  await openDataDir(dir, { hosts: ["127.0.0.1"] });
  for (const [file, said] of [
    ["factory.json", `Cannot read ${join(dir, "factory.json")}: `],
    ["pki/ca.pem", `Cannot read ${join(dir, "pki", "ca.pem and ca.key")}: `],
    ["pki/server.pem", `Cannot read ${join(dir, "pki", "server.pem")}: `],
  ] as const) {
    const good = readFileSync(join(dir, file));
    writeFileSync(join(dir, file), "garbage{");
    await expect(openDataDir(dir, { hosts: ["127.0.0.1"] })).rejects.toThrow(said);
    expect(readFileSync(join(dir, file), "utf8")).toBe("garbage{");
    writeFileSync(join(dir, file), good);
  }
  await openDataDir(dir, { hosts: ["127.0.0.1"] });
});

test("a gateway of a release before serve.lock, known only by its serve.json, is serving the data dir; a dead or reused PID in serve.json is not", async () => {
  const dir = await tempDir("data-dir-");
  await openDataDir(dir, { factory: "main", hosts });
  // What last week's release ran as (`gateway serve --data DIR`): a live process with `serve` among its arguments.
  const old = Bun.spawn([process.execPath, "-e", "setInterval(() => {}, 1000)", "serve", "--data", dir], { stdout: "ignore", stderr: "ignore" });
  try {
    await sleep(100); // it listens some time after it starts: serve.json is younger than the process
    const info = { url: "https://127.0.0.1:38500", publicUrl: "https://127.0.0.1:38500", pid: old.pid };
    await writeServeInfo(dir, info);
    expect(await servingPid(dir)).toBe(old.pid);
    // This release does not take it, as it does not take a dir a gateway of its own holds.
    await expect(lockDataDir(dir)).rejects.toThrow(`${dir} is in use by the gateway running as PID ${old.pid}`);
    expect(existsSync(join(dir, "serve.lock"))).toBe(false);

    // A serve.json written before the process started (an old gateway killed, its PID now another process's): not in use.
    const before = new Date(Date.now() - 3_600_000);
    utimesSync(join(dir, "serve.json"), before, before);
    expect(await servingPid(dir)).toBeUndefined();

    // Fresh again, but naming a live process that is no gateway (no `serve` argument): this test's own.
    await writeServeInfo(dir, { ...info, pid: process.pid });
    expect(await servingPid(dir)).toBeUndefined();

    // A copy of a data dir this release serves: serve.lock names the same PID as serve.json, and holds only for the original.
    const served = await tempDir("data-dir-");
    const lock = await lockDataDir(served);
    await writeServeInfo(served, { ...info, pid: process.pid });
    const copy = await tempDir("data-dir-copy-");
    cpSync(served, copy, { recursive: true });
    expect(await servingPid(served)).toBe(process.pid);
    expect(await servingPid(copy)).toBeUndefined();
    lock.release();
  } finally {
    old.kill();
    await old.exited;
  }
  // Killed, its serve.json stays behind, fresh: a dead PID is not in use.
  await writeServeInfo(dir, { url: "https://127.0.0.1:38500", publicUrl: "https://127.0.0.1:38500", pid: old.pid });
  expect(await servingPid(dir)).toBeUndefined();
});
