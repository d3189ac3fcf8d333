/**
 * Malicious app bundles against the device-side extractor (lib/compose
 * extract.ts) and malformed compose files/YAML against the parser: each is
 * refused with a clear error, the app dir that was installed before is left
 * exactly as it was, and nothing is written outside it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { claimingTgz, sha, tgz, type TarEntrySpec as E } from "../fixtures/tar-builders.ts";
import { BundleIndexMismatchError, extractBundle, InvalidComposeBundleError, UnsafeBundleError } from "../../lib/compose/extract.ts";
import { ComposeFileError, parseCompose } from "../../lib/compose/compose-file.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("bundle");
const work = mkdtempSync(join(tmpdir(), "rel-bundle-"));
const appsRoot = join(work, "compose-apps");
const dest = join(appsRoot, "web");
const OLD = "services:\n  web:\n    image: busybox\n";

beforeAll(() => {
  mkdirSync(dest, { recursive: true });
  writeFileSync(join(dest, "docker-compose.yml"), OLD);
});
afterAll(() => {
  tally.print();
  rmSync(work, { recursive: true, force: true });
});


/** Everything under the work dir except the installed app: must stay as it was. */
function outside(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (p === dest) continue;
      out.push(p);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(work);
  return out.sort();
}

const compose = "services:\n  web:\n    image: busybox\n    command: ['true']\n";

async function refusedBundle(name: string, expected: abstract new (...a: never[]) => Error, bundle: Uint8Array, index: Record<string, string>, opts: { maxFileSize?: number; maxTotalSize?: number } = {}) {
  const before = outside();
  const file = join(work, `bundle-${Math.random().toString(36).slice(2)}.tgz`);
  writeFileSync(file, bundle);
  const beforeFiles = outside();
  await tally.refuses(name, expected, () => extractBundle({ bundle: file, index, dest, ...opts }));
  rmSync(file);
  expect(outside()).toEqual(before);
  expect(beforeFiles.length).toBe(before.length + 1);
  expect(readdirSync(dest)).toEqual(["docker-compose.yml"]);
  expect(readFileSync(join(dest, "docker-compose.yml"), "utf8")).toBe(OLD);
  expect(existsSync("/tmp/rel-bundle-pwned")).toBe(false);
}

describe("malicious bundles are refused and leave the installed app as it was", () => {
  const base: E = { name: "docker-compose.yml", content: compose };
  const idx = { "docker-compose.yml": sha(compose) };

  test("path traversal and absolute paths", async () => {
    await refusedBundle("entry ../../rel-bundle-pwned", UnsafeBundleError, await tgz([base, { name: "../../rel-bundle-pwned", content: "x" }]), { ...idx });
    await refusedBundle("entry a/../../x", UnsafeBundleError, await tgz([base, { name: "a/../../x", content: "x" }]), { ...idx });
    await refusedBundle("absolute entry /tmp/rel-bundle-pwned", UnsafeBundleError, await tgz([base, { name: "/tmp/rel-bundle-pwned", content: "x" }]), { ...idx });
    await refusedBundle("index lists ../x", UnsafeBundleError, await tgz([base]), { ...idx, "../x": sha("x") });
  });

  test("symlinks and hard links leading out", async () => {
    await refusedBundle("symlink to /etc", UnsafeBundleError, await tgz([base, { name: "etc", type: "symlink", linkname: "/etc" }]), idx);
    await refusedBundle("symlink to ../../..", UnsafeBundleError, await tgz([base, { name: "up", type: "symlink", linkname: "../../.." }]), idx);
    await refusedBundle(
      "write through a symlinked dir (d -> /tmp, then d/rel-bundle-pwned)",
      UnsafeBundleError,
      await tgz([base, { name: "d", type: "symlink", linkname: "/tmp" }, { name: "d/rel-bundle-pwned", content: "x" }]),
      { ...idx, "d/rel-bundle-pwned": sha("x") },
    );
    await refusedBundle("hard link to /etc/passwd", UnsafeBundleError, await tgz([base, { name: "pw", type: "link", linkname: "/etc/passwd" }]), idx);
    await refusedBundle("hard link to ../../outside", UnsafeBundleError, await tgz([base, { name: "pw", type: "link", linkname: "../../outside" }]), idx);
  });

  test("device nodes and fifos", async () => {
    for (const type of ["character-device", "block-device", "fifo"] as const)
      await refusedBundle(`${type} entry`, UnsafeBundleError, await tgz([base, { name: "node", type }]), idx);
  });

  test("huge files and totals", async () => {
    await refusedBundle("file header claiming 8 GiB", UnsafeBundleError, claimingTgz("docker-compose.yml", 8 * 1024 ** 3), idx);
    const big = "x".repeat(64 << 10);
    await refusedBundle("64 KiB file over a 16 KiB file cap", UnsafeBundleError, await tgz([base, { name: "big", content: big }]), { ...idx, big: sha(big) }, { maxFileSize: 16 << 10 });
    await refusedBundle(
      "files summing over the total cap",
      UnsafeBundleError,
      await tgz([base, { name: "a", content: big }, { name: "b", content: big }]),
      { ...idx, a: sha(big), b: sha(big) },
      { maxTotalSize: 100 << 10 },
    );
  });

  test("bundle and index disagree", async () => {
    await refusedBundle("file content differs from its index digest", BundleIndexMismatchError, await tgz([base]), { "docker-compose.yml": sha("other") });
    await refusedBundle("file not listed in the index", BundleIndexMismatchError, await tgz([base, { name: "extra", content: "x" }]), idx);
    await refusedBundle("index lists a file the bundle lacks", BundleIndexMismatchError, await tgz([base]), { ...idx, missing: sha("m") });
    await refusedBundle("index digest not sha256", InvalidComposeBundleError, await tgz([base]), { "docker-compose.yml": "md5:abc" });
    await refusedBundle("not a gzip", InvalidComposeBundleError, new TextEncoder().encode("hello, not a tarball"), idx);
    await refusedBundle("truncated gzip", InvalidComposeBundleError, (await tgz([base, { name: "f", content: "y".repeat(10000) }])).slice(0, 60), { ...idx, f: sha("y".repeat(10000)) });
  });
});

describe("malformed compose files and YAML are refused", () => {
  const cases: [string, string | Uint8Array][] = [
    ["not YAML", "services: [unclosed\n"],
    ["duplicate keys", "services:\n  web:\n    image: a\n  web:\n    image: b\n"],
    ["no services", "version: '3'\n"],
    ["services is a list", "services:\n  - web\n"],
    ["service without image or build", "services:\n  web:\n    command: x\n"],
    ["not UTF-8", new Uint8Array([0x73, 0x65, 0xff, 0xfe, 0x0a])],
    ["over 1 MiB", `services:\n  web:\n    image: a\n# ${"x".repeat(1 << 20)}\n`],
    ["a scalar document", "just a string\n"],
    ["empty", ""],
    [
      "billion laughs (alias expansion)",
      `a: &a ["x","x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nservices:\n  web:\n    image: a\n    command: *g\n`,
    ],
  ];
  for (const [name, content] of cases) {
    test(`refuses ${name}`, async () => {
      const t0 = performance.now();
      await tally.refuses(`compose: ${name}`, ComposeFileError, async () => parseCompose(content, "web/docker-compose.yml"));
      expect(performance.now() - t0).toBeLessThan(2000);
    });
  }
});
