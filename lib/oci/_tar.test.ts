import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import { indexTar, tarChunks, toReadableStream } from "./_tar.ts";

describe("tar", () => {
  test("what tarChunks writes, tar(1) lists and indexTar finds at the right offsets", async () => {
    const dir = await tempDir("tar-");
    const big = crypto.getRandomValues(new Uint8Array(70_000));
    await Bun.write(join(dir, "big"), big);
    const long = `${"d".repeat(90)}/${"f".repeat(60)}`;
    const body = toReadableStream(
      tarChunks([
        { name: "a.txt", content: new TextEncoder().encode("hello") },
        { name: "blobs/sha256/big", content: Bun.file(join(dir, "big")) },
        { name: long, content: new Uint8Array(0) },
      ]),
    );
    const tarPath = join(dir, "out.tar");
    await Bun.write(tarPath, new Response(body));
    const listed = Bun.spawnSync(["tar", "-tf", tarPath]).stdout.toString().trim().split("\n");
    expect(listed).toEqual(["a.txt", "blobs/sha256/big", long]);
    const idx = await indexTar(tarPath);
    const e = idx.get("blobs/sha256/big")!;
    expect(e.size).toBe(big.length);
    expect(new Uint8Array(await Bun.file(tarPath).slice(e.offset, e.offset + e.size).arrayBuffer())).toEqual(big);
    expect(await Bun.file(tarPath).slice(idx.get("a.txt")!.offset, idx.get("a.txt")!.offset + 5).text()).toBe("hello");
    expect(idx.has(long)).toBe(true);
  });

  test("indexTar reads GNU tar output with long names", async () => {
    const dir = await tempDir("tar-");
    const name = `${"x".repeat(120)}.txt`;
    await Bun.write(join(dir, "src", name), "content");
    Bun.spawnSync(["tar", "-cf", join(dir, "gnu.tar"), "-C", join(dir, "src"), "."]);
    const idx = await indexTar(join(dir, "gnu.tar"));
    const e = idx.get(name)!;
    expect(await Bun.file(join(dir, "gnu.tar")).slice(e.offset, e.offset + e.size).text()).toBe("content");
  });
});
