/**
 * The shipped artefacts: `bun build --compile` binaries for linux-x64 and linux-arm64. Builds
 * them (or reuses dist/ when newer than every source), then runs each one as a user would:
 * x64 natively, arm64 under qemu-aarch64-static with Debian's arm64 libc as sysroot.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pkg from "../../package.json" with { type: "json" };
import { ARCHES, BINARIES, binaryPath, build, type BuildResult } from "../../scripts/build.ts";
import { ensureSysroot } from "../../scripts/sysroot.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { run } from "../harness/tmp.ts";

let result: BuildResult;
let sysroot: string;
/** `--version` of every binary, started together: under qemu each takes seconds. */
const versions = new Map<string, ReturnType<typeof run>>();

beforeAll(async () => {
  [result, sysroot] = await Promise.all([build({ ifStale: true, log: (l) => console.error(l) }), ensureSysroot((l) => console.error(l))]);
  for (const b of result.binaries) versions.set(`${b.name}-${b.arch}`, exec(b.name, b.arch, ["--version"]));
}, 600_000);

function exec(name: (typeof BINARIES)[number], arch: (typeof ARCHES)[number], args: string[]) {
  const bin = binaryPath(name, arch);
  const cmd = arch === "x64" ? [bin, ...args] : ["qemu-aarch64-static", "-L", sysroot, bin, ...args];
  return run(cmd, { allowFail: true, env: { BUN_BE_BUN: undefined } });
}

describe("compiled binaries", () => {
  test("every binary has its entry point and was built for both architectures", () => {
    expect(result.missing).toEqual([]);
    const built = result.binaries.map((b) => `${b.name}-linux-${b.arch}`).sort();
    expect(built).toEqual(BINARIES.flatMap((n) => ARCHES.map((a) => `${n}-linux-${a}`)).sort());
  });

  for (const name of BINARIES) {
    for (const arch of ARCHES) {
      test(`${name}-linux-${arch} --version prints the package version`, async () => {
        const res = await (versions.get(`${name}-${arch}`) ?? exec(name, arch, ["--version"]));
        expect(res.code).toBe(0);
        expect(res.stdout.trim()).toBe(`${name} ${pkg.version}`);
      }, 120_000);
    }

    test(`${name}-linux-x64: --help of every command works (each lazily imported command is bundled)`, async () => {
      const help = await exec(name, "x64", ["--help"]);
      expect(help.code).toBe(0);
      // From "Commands:" to the exit-code table, whose rows look alike ("  130  interrupted...").
      const section = (help.stdout.split(/^Commands:\n/m)[1] ?? "").split(/^Exit codes:/m)[0]!;
      const commands = [...section.matchAll(/^ {2}(\S+)\s{2,}/gm)].map((m) => m[1]!);
      for (const cmd of commands) {
        const res = await exec(name, "x64", [cmd, "--help"]);
        expect({ cmd, code: res.code, stderr: res.stderr }).toEqual({ cmd, code: 0, stderr: "" });
        expect(res.stdout).toContain(cmd);
      }
    }, 60_000);
  }
});

describe("compiled gateway", () => {
  let gw: GatewayHandle | undefined;
  afterAll(() => gw?.stop());

  test("gateway-linux-x64 serve answers /healthz over HTTPS with its own CA", async () => {
    gw = await startGateway({ command: [binaryPath("gateway", "x64")] });
    const res = await fetch(`${gw.url}/healthz`, { tls: { ca: gw.caPem } } as RequestInit);
    expect(res.status).toBe(200);
    expect((await gw.adminFetch("/admin/devices")).status).toBe(200);
  }, 60_000);
});
