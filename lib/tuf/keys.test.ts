import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { Metadata, Root, Timestamp } from "@tufjs/models";
import { generateKey, keyIdOf, KeyFileError, loadKeyFile, modelKey, parseKey, saveKeyFile, serializeKey, signerFor } from "./keys.ts";
import { expiresAt, parseMetadata, signMetadata } from "./metadata.ts";
import { describeError } from "../cli/command.ts";

describe("keys", () => {
  test("key id is the sha256 of the canonical public key object", () => {
    const k = generateKey();
    const canonical = `{"keytype":"ed25519","keyval":{"public":"${k.publicKey.keyval.public}"},"scheme":"ed25519"}`;
    expect(k.keyId).toBe(createHash("sha256").update(canonical).digest("hex"));
    expect(keyIdOf(k.publicKey)).toBe(k.keyId);
    expect(k.publicKey.keyval.public).toMatch(/^[0-9a-f]{64}$/);
  });

  test("signatures verify with @tufjs/models", () => {
    const k = generateKey();
    const md = new Metadata(new Timestamp({ version: 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 3600) }));
    md.sign(signerFor(k));
    expect(() => modelKey(k).verifySignature(md)).not.toThrow();
    const other = generateKey();
    expect(() => modelKey({ ...other, keyId: k.keyId }).verifySignature(md)).toThrow();
  });

  test("a root signed with signMetadata verifies itself", () => {
    const k = generateKey();
    const root = new Root({ version: 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 86400), consistentSnapshot: true });
    for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(k), role);
    const md = parseMetadata("root", signMetadata(root, [k]));
    expect(() => md.verifyDelegate("root", md)).not.toThrow();
  });

  test("key files round-trip with mode 0600", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tuf-keys-"));
    try {
      const k = generateKey();
      await saveKeyFile(join(dir, "root.json"), k);
      expect((await stat(join(dir, "root.json"))).mode & 0o777).toBe(0o600);
      const back = await loadKeyFile(join(dir, "root.json"));
      expect(back.keyId).toBe(k.keyId);
      expect(serializeKey(back)).toBe(serializeKey(k));
      await writeFile(join(dir, "bad.json"), "{}");
      await expect(loadKeyFile(join(dir, "bad.json"))).rejects.toThrow(KeyFileError);
      await expect(loadKeyFile(join(dir, "absent.json"))).rejects.toMatchObject({ code: "ENOENT", message: `Cannot load TUF key "${join(dir, "absent.json")}": no such file` });
      // In words, once: not "EISDIR: EISDIR: illegal operation on a directory, read" (the code, then its errno cause).
      const folder = await loadKeyFile(dir).catch((e: Error) => e);
      expect(describeError(folder)).toBe(`Cannot load TUF key "${dir}": it is a directory`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a key file whose key id does not match is refused", () => {
    const text = JSON.parse(serializeKey(generateKey()));
    text.keyid = "00".repeat(32);
    expect(() => parseKey(JSON.stringify(text))).toThrow(/does not match/);
  });
});
