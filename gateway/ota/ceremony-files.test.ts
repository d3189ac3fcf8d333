import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Root } from "@tufjs/models";
import { draftNextRoot, expiresAt, generateKey, modelKey, parseMetadata, signMetadata } from "../../lib/tuf/index.ts";
import { CeremonyFileError, checkDraftOut, draftOutExists, holdsCurrentRoot, previousRootPath, writeDraft } from "./ceremony-files.ts";

let dir: string;
let v1: string;
let v2: Uint8Array;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ceremony-files-"));
  const key = generateKey();
  const root = new Root({ version: 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 86400), consistentSnapshot: true });
  for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
  v1 = new TextDecoder().decode(signMetadata(root, [key]));
  v2 = draftNextRoot(v1, { expires: expiresAt(new Date(), 86400) });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

test("the previous root of a draft of vN is <N-1>.root.json beside it", () => {
  expect(previousRootPath("ceremony/2.root.json", 2)).toBe("ceremony/1.root.json");
});

describe("the draft's --out", () => {
  test("a directory is refused, a new file is not there yet", async () => {
    await expect(draftOutExists(dir)).rejects.toThrow(`Cannot use ${dir}: it is a directory`);
    expect(await draftOutExists(join(dir, "2.root.json"))).toBe(false);
  });

  test("named for another version, or there already, it is refused", () => {
    expect(() => checkDraftOut("c/3.root.json", 1, false)).toThrow("Cannot use c/3.root.json: the current root is v1, so the draft is v2: name it c/2.root.json");
    expect(() => checkDraftOut("c/2.root.json", 1, true)).toThrow(CeremonyFileError);
    expect(() => checkDraftOut("c/next.json", 1, false)).not.toThrow();
  });
});

test("writeDraft saves the current root beside the draft, keeps one already there, refuses anything else", async () => {
  const current = { text: v1, root: parseMetadata("root", v1).signed };
  const first = join(dir, "a");
  await Bun.write(join(first, ".keep"), "");
  expect(await writeDraft(join(first, "2.root.json"), v2, current)).toEqual({ previous: join(first, "1.root.json"), alreadyThere: false });
  expect(await readFile(join(first, "1.root.json"), "utf8")).toBe(v1);

  const again = join(dir, "b");
  await Bun.write(join(again, "1.root.json"), v1);
  expect(await writeDraft(join(again, "2.root.json"), v2, current)).toEqual({ previous: join(again, "1.root.json"), alreadyThere: true });

  const other = join(dir, "c");
  await Bun.write(join(other, "1.root.json"), "not json");
  await expect(holdsCurrentRoot(join(other, "1.root.json"), current.root)).rejects.toThrow("it is not a root.json, and the current root v1 belongs there for sign-root");
  await expect(writeDraft(join(other, "2.root.json"), v2, current)).rejects.toThrow(CeremonyFileError);
  expect(await Bun.file(join(other, "2.root.json")).exists()).toBe(false);
  await writeFile(join(other, "1.root.json"), v2);
  await expect(writeDraft(join(other, "2.root.json"), v2, current)).rejects.toThrow("it holds root.json v2 (0 signatures)");
});
