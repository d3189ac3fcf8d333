import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "./command.ts";
import { readFlagFile, readPemFlagFile } from "./flag-file.ts";

const dir = mkdtempSync(join(tmpdir(), "flag-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("reads the file a flag names", async () => {
  writeFileSync(join(dir, "key.pem"), "-----BEGIN KEY-----\n");
  expect(await readFlagFile(join(dir, "key.pem"), "--tls-key")).toBe("-----BEGIN KEY-----\n");
});

test("a file it cannot read is bad usage naming the flag, the path and a plain reason", async () => {
  const missing = await readFlagFile(join(dir, "nope.pem"), "--tls-cert").catch((e) => e);
  expect(missing).toBeInstanceOf(UsageError);
  expect(missing.message).toBe(`Cannot read --tls-cert ${join(dir, "nope.pem")}: no such file`);
  mkdirSync(join(dir, "a-dir"));
  expect((await readFlagFile(join(dir, "a-dir"), "the recipient key").catch((e) => e)).message).toBe(`Cannot read the recipient key ${join(dir, "a-dir")}: it is a directory`);
  if (process.getuid?.() !== 0) {
    writeFileSync(join(dir, "secret"), "x");
    chmodSync(join(dir, "secret"), 0);
    expect((await readFlagFile(join(dir, "secret"), "the passphrase file").catch((e) => e)).message).toContain("permission denied");
  }
});

test("a PEM file a flag names must hold a PEM block (of the label, when given)", async () => {
  writeFileSync(join(dir, "cert.pem"), "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n");
  writeFileSync(join(dir, "key.json"), "{}\n");
  expect(await readPemFlagFile(join(dir, "cert.pem"), "--tls-cert")).toStartWith("-----BEGIN CERTIFICATE-----");
  expect(await readPemFlagFile(join(dir, "cert.pem"), "--ca", "CERTIFICATE")).toStartWith("-----BEGIN CERTIFICATE-----");
  const notPem = await readPemFlagFile(join(dir, "key.json"), "--tls-key").catch((e) => e);
  expect(notPem).toBeInstanceOf(UsageError);
  expect(notPem.message).toBe(`Cannot read --tls-key ${join(dir, "key.json")}: it holds no PEM (expected -----BEGIN ...)`);
  expect((await readPemFlagFile(join(dir, "cert.pem"), "--tls-key", "PRIVATE KEY").catch((e) => e)).message).toBe(
    `Cannot read --tls-key ${join(dir, "cert.pem")}: it holds no PEM PRIVATE KEY (expected -----BEGIN PRIVATE KEY-----)`,
  );
  expect((await readPemFlagFile(join(dir, "nope.pem"), "--tls-cert").catch((e) => e)).message).toBe(`Cannot read --tls-cert ${join(dir, "nope.pem")}: no such file`);
});
