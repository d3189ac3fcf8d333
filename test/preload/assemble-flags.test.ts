/**
 * `preload`'s flags as a factory's CI line gives them, run as the CLI against files in a temp dir
 * (no gateway, no docker): every flag is checked before the factory config decides, so a broken
 * line fails with exit 2 naming the flag on every ref, not green on the refs that build no image;
 * hardware ids, tags and versions follow the rules fioup holds devices to; a missing file or a
 * root.json that is not TUF root metadata is named with its flag; the log names the right files.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Root } from "@tufjs/models";
import { caFingerprint } from "../../lib/tls/pin.ts";
import { generateKey, modelKey } from "../../lib/tuf/keys.ts";
import { expiresAt, signJson, signMetadata } from "../../lib/tuf/metadata.ts";
import { run, tempDir } from "../harness/tmp.ts";

const ROOT = join(import.meta.dir, "../..");
const PIN = "a".repeat(64);

let dir: string;
/** factory-config.yml files: one that preloads nothing (its rules turn preloading off), one that preloads. */
let unrelated: string;
let enabled: string;
/** A TUF root and a targets.json it signs, holding no target; and one holding a target with no app. */
let rootJson: string;
let targetsJson: string;
let appless: string;

beforeAll(async () => {
  dir = await tempDir("preload-flags-");
  unrelated = join(dir, "unrelated.yml");
  writeFileSync(unrelated, "containers:\n  preloaded_images:\n    enabled: false\n  notify: {}\n");
  enabled = join(dir, "enabled.yml");
  writeFileSync(enabled, "containers:\n  preloaded_images:\n    enabled: true\n");
  const key = generateKey();
  const expires = expiresAt(new Date(), 86400);
  const root = new Root({ version: 1, specVersion: "1.0.31", expires, consistentSnapshot: true });
  for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
  rootJson = join(dir, "root.json");
  writeFileSync(rootJson, signMetadata(root, [key]));
  targetsJson = join(dir, "targets.json");
  writeFileSync(targetsJson, signJson({ _type: "targets", spec_version: "1.0.31", version: 1, expires, targets: {} }, [key]));
  appless = join(dir, "appless.json");
  const custom = { version: "1", hardwareIds: ["x86_64-linux"], tags: ["main"], docker_compose_apps: {} };
  const target = { length: 0, hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }, custom };
  writeFileSync(appless, signJson({ _type: "targets", spec_version: "1.0.31", version: 1, expires, targets: { "x86_64-linux-1": target } }, [key]));
});

async function preload(...args: string[]) {
  return await run([process.execPath, join(ROOT, "preload/main.ts"), ...args], { cwd: dir, allowFail: true });
}

/** A complete CI line from files, with `extra` flags (`--flag value` pairs) added or put in place of its own. */
function line(config: string, ...extra: string[]): string[] {
  const flags = new Map<string, string>([["--factory-config", config], ["--ref", "refs/heads/main"], ["--out", join(dir, "out")], ["--targets", targetsJson], ["--root", rootJson]]);
  for (let i = 0; i < extra.length; i += 2) flags.set(extra[i]!, extra[i + 1]!);
  return [...flags].flat();
}

describe("preload checks its flags before the factory config decides", () => {
  test("a config that preloads nothing still exits 0, once the flags are good, and warns that --out got no image", async () => {
    const r = await preload(...line(unrelated));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("no system image for refs/heads/main");
    expect(r.stderr).toContain(`warning: no image was written to --out ${join(dir, "out")}: the rules of ${unrelated} for refs/heads/main say no system image`);
  });

  test("a file with neither a containers nor an lmp section (a compose file given by mistake) is bad usage, exit 2, naming it", async () => {
    const compose = join(dir, "docker-compose.yml");
    writeFileSync(compose, "services:\n  web:\n    image: busybox\nvolumes:\n  data: {}\n");
    const r = await preload(...line(compose));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`--factory-config ${compose} is no factory-config.yml: it has neither a containers nor an lmp section (its top-level keys: services, volumes)`);
    expect(r.stdout).toBe("");
  });

  test("a config that is no factory-config.yml at all exits 10", async () => {
    const list = join(dir, "list.yml");
    writeFileSync(list, "- foo\n- bar\n");
    const r = await preload(...line(list));
    expect(r.code, r.stderr).toBe(10);
    expect(r.stderr).toContain(list);
  });

  test("the audit's broken line fails with exit 2 instead of passing green", async () => {
    const r = await preload(
      "--factory-config", unrelated, "--ref", "refs/heads/main", "--format", "zip", "--targets", "nope.json", "--root", "nope.json",
      "--bundle", "/nonexistent", "--hwid", "bad hw", "--platform", "bogus",
    );
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).not.toContain("no system image");
  });

  const bad: [what: string, args: string[], says: string][] = [
    ["--format", ["--format", "zip"], '--format must be one of dir, tar, ext4, got "zip"'],
    ["--hwid", ["--hwid", "bad hw"], '--hwid: expected a hardware id (letters, digits, . _ -; at most 128, starting with a letter or digit), got "bad hw"'],
    ["--tag", ["--tag", "bad tag!"], '--tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "bad tag!"'],
    ["--target", ["--target", "abc"], '--target: expected a target version: 1-15 digits, as `fioup check` lists them, got "abc"'],
    ["--platform", ["--platform", "bogus"], '--platform: Invalid platform "bogus"'],
    ["--insecure-registry", ["--insecure-registry", "http://127.0.0.1:5000"], '--insecure-registry: expected a registry host[:port] as image references name it (e.g. 127.0.0.1:5000), got "http://127.0.0.1:5000"'],
    ["--targets", ["--targets", "nope.json"], "Cannot read --targets nope.json: no such file"],
    ["--root", ["--root", "nope.json"], "Cannot read --root nope.json: no such file"],
    ["--base", ["--base", "/nonexistent"], "Cannot read --base /nonexistent: no such file"],
    ["--fioup", ["--fioup", "/nonexistent"], "Cannot read --fioup /nonexistent: no such file"],
    ["--ca", ["--ca", "/nonexistent"], "Cannot read --ca /nonexistent: no such file"],
  ];
  for (const config of ["preloads nothing", "preloads"]) {
    for (const [what, args, says] of bad) {
      test(`a bad ${what} exits 2 naming it, when the config ${config}`, async () => {
        const r = await preload(...line(config === "preloads" ? enabled : unrelated, ...args));
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toContain(`preload assemble: ${says}`);
        expect(r.stdout).toBe("");
      });
    }
  }

  test("without --explain, --out and a source of targets are required even when the config preloads nothing", async () => {
    const noOut = await preload("--factory-config", unrelated, "--ref", "refs/heads/main", "--targets", targetsJson, "--root", rootJson);
    expect(noOut.code, noOut.stderr).toBe(2);
    expect(noOut.stderr).toContain("--out is required");
    const explained = await preload("--factory-config", unrelated, "--ref", "refs/heads/main", "--explain");
    expect(explained.code, explained.stderr).toBe(0);
    expect(explained.stdout).toContain("no system image for refs/heads/main");
  });
});

describe("files and tokens a flag names", () => {
  test("a --token without a CA pin is bad usage (exit 2), not an unreachable gateway", async () => {
    const r = await preload("--factory-config", enabled, "--ref", "refs/heads/main", "--out", join(dir, "out"), "--server", "https://127.0.0.1:1", "--token", "x");
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("--token (or PRELOAD_TOKEN) is not <secret>.<sha256 of the gateway CA>");
  });

  test("--server must be an https:// URL", async () => {
    const r = await preload("--factory-config", enabled, "--ref", "refs/heads/main", "--out", join(dir, "out"), "--server", "gateway:8443", "--token", `x.${PIN}`);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("--server gateway:8443: expected https://HOST[:PORT]");
  });

  test("a --bundle that is not there exits 2 naming the flag and the path", async () => {
    const r = await preload("--factory-config", enabled, "--ref", "refs/heads/main", "--out", join(dir, "out"), "--bundle", "/nonexistent", "--root", rootJson);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("Cannot read --bundle /nonexistent: no such directory");
  });

  test("a --bundle directory that is no bundle exits 2, as `fioup update --offline` does, also on a ref that builds no image", async () => {
    for (const config of [enabled, unrelated]) {
      const r = await preload("--factory-config", config, "--ref", "refs/heads/main", "--out", join(dir, "out"), "--bundle", dir, "--root", rootJson);
      expect({ config, code: r.code }, r.stderr).toEqual({ config, code: 2 });
      expect(r.stderr).toContain(`Cannot open the bundle ${dir}: no index.json`);
    }
  });

  test("a --targets file that is not there exits 2 naming the flag and the path", async () => {
    const r = await preload(...line(enabled, "--targets", join(dir, "nope.json")));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`Cannot read --targets ${join(dir, "nope.json")}: no such file`);
  });

  test("a --root that is JSON but not TUF root metadata is named as such", async () => {
    const shapeless = join(dir, "shapeless.json");
    writeFileSync(shapeless, JSON.stringify({ hello: "world" }));
    const r = await preload(...line(enabled, "--root", shapeless));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`--root ${shapeless} is not TUF root metadata: `);
    expect(r.stderr).not.toContain("preload assemble: signed is not defined");
    // A targets.json given as the root is not root metadata either.
    const swapped = await preload(...line(enabled, "--root", targetsJson));
    expect(swapped.code, swapped.stderr).toBe(2);
    expect(swapped.stderr).toContain(`--root ${targetsJson} is not TUF root metadata: `);
  });

  test("the log names the targets file and the root it is verified against", async () => {
    const r = await preload(...line(enabled, "--hwid", "amd64-linux"));
    expect(r.stderr).toContain(`verifying the targets of ${targetsJson} against the TUF root ${rootJson}\n`);
    // Both verify; the targets hold nothing for this device.
    expect(r.code, r.stderr).toBe(20);
    expect(r.stderr).toContain(`No target for hardware id amd64-linux and tag main in ${targetsJson}`);
  });
});

describe("what the factory config says is checked before an image is built", () => {
  const config = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const preloading = (shortlist: string) => `containers:\n  preloaded_images:\n    enabled: true\n    shortlist: ${JSON.stringify(shortlist)}\n`;

  const invalid: [what: string, text: string, says: string][] = [
    ["an empty shortlist", preloading(""), "line 4: containers.preloaded_images.shortlist: empty: it would preload no app"],
    ["a shortlist of no app names", preloading("a b, c/d"), 'line 4: containers.preloaded_images.shortlist: expected an app name (letters, digits, . _ -; at most 128), got "a b"'],
    ["an empty APP_SHORTLIST", `ref_options:\n  refs/heads/main:\n    params:\n      APP_SHORTLIST: ""\n      ASSEMBLE_SYSTEM_IMAGE: "1"\n`, 'line 4: ref_options["refs/heads/main"].params.APP_SHORTLIST: empty'],
    ["ASSEMBLE_SYSTEM_IMAGE: false as a string", `ref_options:\n  refs/heads/main:\n    params:\n      ASSEMBLE_SYSTEM_IMAGE: "false"\n`, 'line 4: ref_options["refs/heads/main"].params.ASSEMBLE_SYSTEM_IMAGE: expected 0 or 1 ("0", "1", or false, true), got "false"'],
    ["a misspelt enabled", "containers:\n  preloaded_images:\n    enable: true\n", "line 3: containers.preloaded_images.enable: unknown key: did you mean enabled?"],
  ];
  for (const [what, text, says] of invalid) {
    test(`${what} exits 10 naming the file and the key`, async () => {
      const fc = config("invalid.yml", text);
      const r = await preload(...line(fc, "--targets", appless));
      expect(r.code, r.stderr).toBe(10);
      expect(r.stderr).toContain(`Invalid ${fc}: ${says}`);
    });
  }

  test("ASSEMBLE_SYSTEM_IMAGE: false means no image", async () => {
    const fc = config("off.yml", "containers:\n  preloaded_images:\n    enabled: true\nref_options:\n  refs/heads/main:\n    params:\n      ASSEMBLE_SYSTEM_IMAGE: false\n");
    const r = await preload(...line(fc, "--targets", appless));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("no system image for refs/heads/main");
  });

  test("a misspelt top-level section is warned about on stderr, and other sections are left alone", async () => {
    const fc = config("containerz.yml", "notify:\n  email: x\nlmp:\n  tagging: {}\ncontainerz:\n  preloaded_images:\n    enabled: true\n");
    const r = await preload(...line(fc));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toStartWith(`warning: ${fc}: line 5: containerz: unknown key, ignored: did you mean containers?\n`);
  });

  test("with it the only section, the file is no factory config: the warning, then bad usage (exit 2)", async () => {
    const fc = config("containerz-only.yml", "notify:\n  email: x\ncontainerz:\n  preloaded_images:\n    enabled: true\n");
    const r = await preload(...line(fc));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`warning: ${fc}: line 3: containerz: unknown key, ignored: did you mean containers?\n`);
    expect(r.stderr).toContain("it has neither a containers nor an lmp section (its top-level keys: notify, containerz)");
  });

  test("a target with no app gives no image (exit 20) rather than one that runs nothing", async () => {
    const r = await preload(...line(enabled, "--targets", appless));
    expect(r.code, r.stderr).toBe(20);
    expect(r.stderr).toContain("Target x86_64-linux-1 has no app to preload");
  });

  test("a --factory-config that is not there is bad usage (exit 2) like any file a flag names", async () => {
    const r = await preload(...line(join(dir, "nope.yml")));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`Cannot read --factory-config ${join(dir, "nope.yml")}: no such file`);
  });
});

describe("a server that refuses the token or is no gateway, and a --ca that is no certificate", () => {
  let server: ReturnType<typeof Bun.serve>;
  let url: string;
  let token: string;
  let caPem: string;
  /** What the server answers under /repo/. */
  let repoStatus = 401;

  const openssl = (...args: string[]) => {
    const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe", stdout: "pipe" });
    if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
  };

  beforeAll(() => {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test CA", "-days", "2");
    openssl("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
    writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf");
    caPem = readFileSync(join(dir, "ca.pem"), "utf8");
    token = `s3cret.${caFingerprint(caPem)}`;
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: readFileSync(join(dir, "server.pem"), "utf8"), key: readFileSync(join(dir, "server.key"), "utf8") },
      fetch: (req) => (new URL(req.url).pathname === "/ca.pem" ? new Response(caPem) : new Response("no", { status: repoStatus })),
    });
    url = `https://127.0.0.1:${server.port}`;
  });
  afterAll(() => server?.stop(true));

  const fromServer = (...extra: string[]) => preload("--factory-config", enabled, "--ref", "refs/heads/main", "--out", join(dir, "out"), "--server", url, "--token", token, ...extra);

  for (const status of [401, 403]) {
    for (const root of [false, true]) {
      test(`HTTP ${status} is the gateway refusing the token (exit 30), not targets that do not verify${root ? ", also with --root" : ""}`, async () => {
        repoStatus = status;
        const r = await fromServer(...(root ? ["--root", rootJson] : []));
        expect(r.code, r.stderr).toBe(30);
        expect(r.stderr).toContain(`The gateway ${url} refused the token (--token, or PRELOAD_TOKEN): HTTP ${status}`);
      });
    }
  }

  test("HTTP 404 on the TUF repository is a server that is no gateway (exit 30)", async () => {
    repoStatus = 404;
    const r = await fromServer();
    expect(r.code, r.stderr).toBe(30);
    expect(r.stderr).toContain(`${url} does not look like a gateway: no TUF repository at ${url}/repo/1.root.json (HTTP 404)`);
  });

  test("a --ca that is no certificate is bad usage (exit 2) naming the flag; a certificate is taken", async () => {
    const r = await preload(...line(enabled, "--ca", enabled));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`preload assemble: Cannot read --ca ${enabled}: it holds no PEM CERTIFICATE (expected -----BEGIN CERTIFICATE-----)`);
    const good = await preload(...line(enabled, "--ca", join(dir, "ca.pem")));
    expect(good.code, good.stderr).toBe(20);
  });
});

test("with --json an error is also a JSON object on stdout, as the other tools print it with --format json", async () => {
  const fc = join(dir, "json-invalid.yml");
  writeFileSync(fc, "containers:\n  preloaded_images:\n    enable: true\n");
  const invalid = await preload(...line(fc), "--json");
  expect(invalid.code, invalid.stderr).toBe(10);
  expect(JSON.parse(invalid.stdout)).toEqual({ error: `Invalid ${fc}: line 3: containers.preloaded_images.enable: unknown key: did you mean enabled?`, code: "FactoryConfigError", exitCode: 10 });
  expect(invalid.stderr).toContain("containers.preloaded_images.enable");
  const noTarget = await preload(...line(enabled), "--json");
  expect(noTarget.code, noTarget.stderr).toBe(20);
  expect(JSON.parse(noTarget.stdout)).toMatchObject({ code: "NoTargetError", exitCode: 20 });
});
