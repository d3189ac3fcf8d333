import { describe, expect, test } from "bun:test";
import { runCliCaptured } from "../../test/harness/cli.ts";
import { asUsage, defineCommand, describeError, runCli, UsageError } from "./command.ts";
import { fsWhy } from "../fs/why.ts";

function groupCli() {
  const cmd = defineCommand({ summary: "a sub-command", flags: {}, run() {} });
  return { name: "t", version: "0", summary: "t", commands: { "keys list": async () => ({ default: cmd }), "keys make": async () => ({ default: cmd }) } };
}

function cliWith(seen: { token?: string; force?: boolean }) {
  const cmd = defineCommand({
    summary: "test",
    flags: {
      token: { type: "string", description: "a token" },
      force: { type: "boolean", description: "force" },
    },
    run({ flags }) {
      seen.token = flags.token;
      seen.force = flags.force;
    },
  });
  return { name: "t", version: "0", summary: "t", commands: { go: async () => ({ default: cmd }) } };
}

describe("runCli", () => {
  test("takes a flag value that starts with a dash (tokens may)", async () => {
    const seen: { token?: string } = {};
    expect(await runCli(cliWith(seen), ["go", "--token", "-XWmQ.abc"])).toBe(0);
    expect(seen.token).toBe("-XWmQ.abc");
  });

  test("a forgotten value followed by a known flag is still an error", async () => {
    const seen: { token?: string } = {};
    expect(await runCli(cliWith(seen), ["go", "--token", "--force"])).toBe(2);
    expect(seen.token).toBeUndefined();
  });

  test("a default command runs when the first argument is a flag, and the main help says so", async () => {
    const seen: { token?: string } = {};
    const cli = { ...cliWith(seen), defaultCommand: "go" };
    expect(await runCli(cli, ["--token", "abc"])).toBe(0);
    expect(seen.token).toBe("abc");
    const { code, out } = await runCliCaptured(cli, ["--help"]);
    expect(code).toBe(0);
    expect(out).toContain("Usage: t [<command>] [flags]");
    expect(out).toContain("Without a command, t runs 'go': 't --FLAG ...' is 't go --FLAG ...'.");
  });

  test("an unknown command exits 2", async () => {
    expect(await runCli(cliWith({}), ["nope"])).toBe(2);
  });

  test("a mistyped flag or command is named, with the one most likely meant; a missing value says so", async () => {
    const said = async (argv: string[]) => {
      const { code, err } = await runCliCaptured(cliWith({}), argv);
      return { code, err };
    };
    expect(await said(["go", "--tokne", "abc"])).toEqual({ code: 2, err: "t go: unknown flag --tokne (did you mean --token?)\nRun 't go --help' for usage.\n" });
    expect((await said(["go", "--zzz"])).err).toStartWith("t go: unknown flag --zzz\n");
    // One dash: parseArgs reads `-token` as the short flags t, o, k, e, n and names only the 't'.
    expect(await said(["go", "-token", "abc"])).toEqual({ code: 2, err: "t go: unknown flag -token (did you mean --token?)\nRun 't go --help' for usage.\n" });
    expect((await said(["go", "--force", "-tokne=s3cret"])).err).toStartWith("t go: unknown flag -tokne (did you mean --token?)\n");
    expect((await said(["go", "-x"])).err).toStartWith("t go: unknown flag -x\n");
    expect((await said(["go", "-qz"])).err).toStartWith("t go: unknown flag -qz\n");
    expect((await said(["go", "--token"])).err).toStartWith("t go: --token needs a value\n");
    expect((await said(["go", "--force=yes"])).err).toStartWith("t go: --force takes no value\n");
    const twice = await said(["go", "--token", "s3cret-a", "--token=s3cret-b"]);
    expect({ code: twice.code, err: twice.err }).toEqual({ code: 2, err: expect.stringMatching(/^t go: --token given twice with different values: it takes one\n/) });
    expect(twice.err).not.toContain("s3cret"); // a token's value never reaches the log
    expect((await said(["go", "--token", "a", "--token", "a", "--force", "--force"])).code).toBe(0);
    expect(await said(["--bogus"])).toEqual({ code: 2, err: "t: unknown flag --bogus: a command comes first. Run 't --help' for the list.\n" });
    expect(await said(["og"])).toEqual({ code: 2, err: "t: unknown command 'og' (did you mean 'go'?). Run 't --help' for the list.\n" });
  });
});

test("describeError says each cause once: a wrapper that quotes its cause does not repeat it", () => {
  const refused = new Error("connect ECONNREFUSED 127.0.0.1:1");
  const wrapped = new Error(`Cannot GET https://127.0.0.1:1/admin/devices: ${refused.message}`, { cause: refused });
  expect(describeError(wrapped)).toBe("Cannot GET https://127.0.0.1:1/admin/devices: connect ECONNREFUSED 127.0.0.1:1");
  const other = new Error("Cannot read the recipient key: not a PEM public key", { cause: new Error("NO_START_LINE") });
  expect(describeError(other)).toBe("Cannot read the recipient key: not a PEM public key: NO_START_LINE");
});

test("describeError leaves out a file system error its wrapper said in words, and keeps one it did not", async () => {
  const missing = await Bun.file("/nonexistent/lock").text().catch((e: Error) => e);
  const denied = Object.assign(new Error("EACCES: permission denied, open '/x'"), { code: "EACCES", syscall: "open" });
  expect(describeError(new Error(`Cannot take the lock /nonexistent/lock: ${fsWhy(missing)}`, { cause: missing }))).toBe("Cannot take the lock /nonexistent/lock: no such file");
  expect(describeError(new Error(`Cannot take the lock /x: ${fsWhy(denied)}`, { cause: denied }))).toBe("Cannot take the lock /x: permission denied");
  // A wrapper that does not say it: the cause is the only reason given.
  expect(describeError(new Error("Cannot start", { cause: denied }))).toBe("Cannot start: EACCES: permission denied, open '/x'");
});

test("describeError leaves out Bun's generic fetch hints under a wrapper that says the cause in words", async () => {
  const refused = await fetch("http://127.0.0.1:1/").catch((e: Error) => e);
  const noSocket = await fetch("http://localhost/x", { unix: "/nonexistent/docker.sock" } as RequestInit).catch((e: Error) => e);
  expect(describeError(new Error("Cannot GET http://127.0.0.1:1/: connection refused (is it running at that address?)", { cause: refused }))).toBe(
    "Cannot GET http://127.0.0.1:1/: connection refused (is it running at that address?)",
  );
  expect(describeError(new Error("Cannot reach the Docker Engine at /nonexistent/docker.sock: no such socket", { cause: noSocket }))).toBe(
    "Cannot reach the Docker Engine at /nonexistent/docker.sock: no such socket",
  );
  expect(describeError(refused)).toBe((refused as Error).message); // alone, it is all there is to say
});

test("describeError leaves out Bun's 'closed unexpectedly' cause and its advice to pass verbose: true", async () => {
  // A server that closes every connection at once: Bun's fetch says ECONNRESET with a programmer's hint.
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void s.end(), data() {} } });
  try {
    const reset = await fetch(`http://127.0.0.1:${server.port}/`).catch((e: Error) => e);
    const said = describeError(new Error(`Cannot GET http://127.0.0.1:${server.port}/: the connection was closed before an answer came`, { cause: reset }));
    expect(said).toBe(`Cannot GET http://127.0.0.1:${server.port}/: the connection was closed before an answer came`);
    expect(describeError(reset)).not.toContain("verbose: true");
  } finally {
    server.stop(true);
  }
});

test("a group's unknown sub-command, or a flag before one, is named as such", async () => {
  const said = async (argv: string[]) => {
    const { code, err } = await runCliCaptured(groupCli(), argv);
    return { code, err };
  };
  expect(await said(["keys", "zzzzzz"])).toEqual({ code: 2, err: "t keys: unknown command 'zzzzzz'; choose one of: list, make\n" });
  expect(await said(["keys", "lst"])).toEqual({ code: 2, err: "t keys: unknown command 'lst' (did you mean 'list'?); choose one of: list, make\n" });
  expect(await said(["keys", "--force"])).toEqual({ code: 2, err: "t keys: '--force' is a flag, and a command comes first; choose one of: list, make\n" });
  expect(await said(["keys"])).toEqual({ code: 2, err: "t keys: choose one of: list, make\n" });
});

test("an empty value is bad usage, not the flag left out (a default taken for good, or the current directory as a path)", async () => {
  const seen: { ran?: boolean; tags?: string[] } = {};
  const cmd = defineCommand({
    summary: "test",
    flags: {
      factory: { type: "string", description: "factory", placeholder: "NAME", default: "main" },
      out: { type: "string", description: "out", placeholder: "DIR" },
      tag: { type: "strings", description: "tags", placeholder: "TAG" },
      hwid: { type: "string", description: "an empty one restricts nothing", allowEmpty: true },
    },
    run({ flags }) {
      seen.ran = true;
      seen.tags = flags.tag;
    },
  });
  const cli = { name: "t", version: "0", summary: "t", commands: { go: async () => ({ default: cmd }) } };
  const said = async (argv: string[]) => {
    const { code, err } = await runCliCaptured(cli, argv);
    return { code, err };
  };
  expect(await said(["go", "--factory", ""])).toEqual({ code: 2, err: "t go: --factory is empty: give NAME, or leave the flag out (default: main)\nRun 't go --help' for usage.\n" });
  expect(await said(["go", "--out="])).toEqual({ code: 2, err: "t go: --out is empty: give DIR, or leave the flag out\nRun 't go --help' for usage.\n" });
  expect((await said(["go", "--tag", "a", "--tag", ""])).err).toStartWith("t go: --tag is empty: give TAG, or leave the flag out\n");
  expect(seen.ran).toBeUndefined();
  expect(await said(["go", "--hwid", "", "--tag", "a"])).toEqual({ code: 0, err: "" });
  expect(seen.tags).toEqual(["a"]);
});

test("a command that is also a group's name lists its sub-commands in --help, and suggests one for a mistyped word", async () => {
  const cmd = (summary: string) => defineCommand({ summary, flags: {}, run() {} });
  const cli = { name: "t", version: "0", summary: "t", commands: { backup: async () => ({ default: cmd("write a backup") }), "backup keygen": async () => ({ default: cmd("make a key pair") }) } };
  const help = await runCliCaptured(cli, ["backup", "--help"]);
  expect(help.code).toBe(0);
  const mistyped = await runCliCaptured(cli, ["backup", "keygn"]);
  expect(mistyped.code).toBe(2);
  const [out, err] = [help.out, mistyped.err];
  expect(out).toEndWith("\n\nCommands under 't backup':\n  backup keygen    make a key pair\n");
  expect(err).toBe("t backup: unexpected argument 'keygn': this command takes flags only (did you mean 't backup keygen'?)\nRun 't backup --help' for usage.\n");
});

test("a command's exit codes are data: --help lists the binary's rows it names (their scope naming it left out) and its own wording, as the main help lists the table", async () => {
  const exitCodes = [
    [0, "success"],
    [2, "bad usage"],
    [15, "push and pull: a registry refused"],
    [16, "push: a version that exists"],
    [20, "pull: no such version"],
  ] as const;
  const cmd = (exitCodes: readonly (number | readonly [number, string])[]) => defineCommand({ summary: "s", description: "d", exitCodes, flags: {}, run() {} });
  const commands = { pull: async () => ({ default: cmd([0, [2, "bad usage (--from not a version)"], 15, 20, 16]) }), push: async () => ({ default: cmd([99]) }) };
  const cli = { name: "t", version: "0", summary: "t", commands, exitCodes };
  const help = await runCliCaptured(cli, ["pull", "--help"]);
  expect(help.out).toStartWith(
    "Usage: t pull [flags]\n\ns\n\nd\n\nExit codes:\n" +
      "    0  success\n    2  bad usage (--from not a version)\n   15  a registry refused\n   20  no such version\n   16  push: a version that exists\n\nFlags:\n",
  );
  expect((await runCliCaptured(cli, ["--help"])).out).toEndWith("\n\nExit codes:\n    0  success\n    2  bad usage\n   15  push and pull: a registry refused\n   16  push: a version that exists\n   20  pull: no such version\n");
  // A code the table lacks is the command's mistake, not a row left out in silence.
  await expect(runCliCaptured(cli, ["push", "--help"])).rejects.toThrow("t push lists exit code 99, which t's exit-code table does not have");
});

test("a command's own JSON flag (jsonFlag) prints its result and its error as --format json does; bad usage stays text", async () => {
  class Broken extends Error {
    override name = "Broken";
  }
  const cmd = defineCommand({
    summary: "t",
    flags: { format: { type: "string", description: "image type", default: "tar" }, json: { type: "boolean", description: "JSON" }, fail: { type: "boolean", description: "fail" } },
    jsonFlag: "json",
    run({ flags, out }) {
      if (flags.fail) throw new Broken("it broke");
      out.result({ format: flags.format, ok: true }, (d) => `ok ${d.format}`);
    },
  });
  const cli = { name: "t", version: "0", summary: "t", commands: { go: async () => ({ default: cmd }) }, exitCodeFor: (e: unknown) => (e instanceof Broken ? 7 : 1) };
  expect(await runCliCaptured(cli, ["go", "--format", "ext4"])).toEqual({ code: 0, out: "ok ext4\n", err: "" });
  expect(await runCliCaptured(cli, ["go", "--format", "ext4", "--json"])).toEqual({ code: 0, out: '{"format":"ext4","ok":true}\n', err: "" });
  expect(await runCliCaptured(cli, ["go", "--fail"])).toEqual({ code: 7, out: "", err: "t go: it broke\n" });
  const failed = await runCliCaptured(cli, ["go", "--fail", "--json"]);
  expect(failed).toEqual({ code: 7, out: expect.any(String), err: "t go: it broke\n" });
  expect(JSON.parse(failed.out)).toEqual({ error: "it broke", code: "Broken", exitCode: 7 });
  const usage = await runCliCaptured(cli, ["go", "--json", "extra"]);
  expect(usage).toMatchObject({ code: 2, out: "" });
});

test("asUsage turns the named errors into bad usage, thrown or rejected, and lets others pass", async () => {
  class ParseError extends Error {}
  const fail = (e: Error) => () => {
    throw e;
  };
  expect(() => asUsage([ParseError], fail(new ParseError("bad value")), "--x: ")).toThrow(new UsageError("--x: bad value"));
  expect(() => asUsage([ParseError], fail(new TypeError("other")))).toThrow(TypeError);
  expect(asUsage([ParseError], () => 7)).toBe(7);
  const rejected = await asUsage([ParseError], () => Promise.reject(new ParseError("no key file")), "--key: ").catch((e: unknown) => e);
  expect(rejected).toBeInstanceOf(UsageError);
  expect((rejected as Error).message).toBe("--key: no key file");
  expect(await asUsage([ParseError], () => Promise.reject(new TypeError("other"))).catch((e: unknown) => e)).toBeInstanceOf(TypeError);
  expect(await asUsage([ParseError], () => Promise.resolve(8))).toBe(8);
});
