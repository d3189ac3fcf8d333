/**
 * What an operator setting up replicas behind a proxy, with an external registry, types into
 * `gateway serve`, mistyped: each of these once started a gateway that quietly did less (every
 * device behind the proxy answered 401, no forwarded certificate believed, no tokens for the
 * registry). Each is now bad usage (exit 2) naming the flag and what it wants, before the data
 * dir is made.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startGateway } from "../harness/gateway.ts";
import { startPostgres } from "../harness/postgres.ts";
import { tempDir } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");

async function serve(args: string[]): Promise<{ code: number; stderr: string; made: boolean }> {
  const data = join(await tempDir("walk-serve-"), "data");
  const p = Bun.spawn([process.execPath, MAIN, "serve", "--data", data, "--listen", "127.0.0.1:0", ...args], { stdout: "pipe", stderr: "pipe" });
  // A gateway that starts never exits by itself: stop it, and the test then fails on its code.
  const timer = setTimeout(() => p.kill(), 15_000);
  const [code, stderr] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  clearTimeout(timer);
  return { code, stderr, made: existsSync(data) };
}

test.each([
  [["--client-cert-header", "X-SSL-Client-Cert:"], `Invalid --client-cert-header "X-SSL-Client-Cert:": expected a header name such as x-ssl-client-cert (no spaces or colon)`],
  [["--client-cert-header", "x ssl client cert"], `Invalid --client-cert-header "x ssl client cert"`],
  [["--trust-proxy", ""], "--trust-proxy is empty: give the proxy's addresses (e.g. 10.0.0.5 or 10.0.0.0/24), or leave the flag out"],
  [["--trust-proxy", " , "], "--trust-proxy is empty"],
  [["--external-registry-service", ""], "--external-registry-service is empty: give the registry's auth.token.service name, or leave the flag out"],
])("gateway serve %p is bad usage, and no data dir is made", async (args, message) => {
  const r = await serve(args);
  expect({ code: r.code, made: r.made }).toEqual({ code: 2, made: false });
  expect(r.stderr).toContain(`gateway serve: ${message}`);
}, 30_000);

// A socket path where a file already is: the gateway started, made its data dir, and then said
// "a server answers on that socket already", which nothing did. The file must be left as it was.
test("gateway serve --proxy-listen unix:FILE is bad usage naming the file, which is left alone, and no data dir is made", async () => {
  const file = join(await tempDir("walk-sock-"), "proxy.sock");
  writeFileSync(file, "not a socket");
  const r = await serve(["--proxy-listen", `unix:${file}`]);
  expect({ code: r.code, made: r.made }).toEqual({ code: 2, made: false });
  expect(r.stderr).toContain(`gateway serve: Invalid --proxy-listen "unix:${file}": ${file} is a file, not a socket; give a path of its own`);
  expect(readFileSync(file, "utf8")).toBe("not a socket");
}, 30_000);

// A replica behind the shipped proxy configs but left on the default header answered every device
// 401 and logged nothing that pointed at the flag. Its start now says which header it reads.
test("gateway serve --trust-proxy says at start which header it reads, and names the flag the deploy/ configs need", async () => {
  const plain = await startGateway({ args: ["--trust-proxy", "127.0.0.1"] });
  const set = await startGateway({ args: ["--trust-proxy", "127.0.0.1", "--client-cert-header", "X-SSL-Client-Cert"] });
  try {
    expect(readFileSync(plain.logFile, "utf8")).toContain(
      "gateway: taking device certificates that proxies at 127.0.0.1 forward in x-client-cert (the proxy configs in deploy/ send x-ssl-client-cert: for them, give --client-cert-header x-ssl-client-cert)",
    );
    const log = readFileSync(set.logFile, "utf8");
    expect(log).toContain("gateway: taking device certificates that proxies at 127.0.0.1 forward in x-ssl-client-cert\n");
  } finally {
    await plain.stop();
    await set.stop();
  }
}, 60_000);

// A replica behind the proxy without --public-url sends devices that pull from its registry to
// its own address for a token (the realm), which they cannot reach: its start says so.
test("gateway serve --trust-proxy without --public-url warns that the replica names itself, and says to give the proxy's URL", async () => {
  const data = join(await tempDir("walk-serve-"), "data");
  const p = Bun.spawn([process.execPath, MAIN, "serve", "--data", data, "--listen", "127.0.0.1:0", "--trust-proxy", "127.0.0.1", "--client-cert-header", "x-ssl-client-cert"], { stdout: "pipe", stderr: "pipe" });
  let log = "";
  try {
    const decoder = new TextDecoder();
    for await (const chunk of p.stderr) {
      log += decoder.decode(chunk);
      if (log.includes("gateway listening on")) break;
    }
  } finally {
    p.kill();
    await p.exited;
  }
  expect(log).toContain("gateway: warning: behind a proxy (--trust-proxy, --proxy-listen) without --public-url: ");
  expect(log).toContain("give --public-url with the proxy's URL");
}, 60_000);

// A second replica started on a new folder, not a copy: it made a CA and keys there, the shared
// database refused them, and the folder stayed (a later `cp -r` of the right one then landed
// inside it). It is removed again, and the error says what --data must be.
test("a replica started on a new folder instead of a copy is refused, told to copy the first replica's data dir, and leaves no folder", async () => {
  const pg = await startPostgres();
  try {
    const db = await pg.createDatabase("walk");
    const first = await startGateway({ db });
    try {
      const data = join(await tempDir("walk-replica-"), "data");
      // DEBUG=1 prints the error's stack, which names its class: still DataDirMismatchError, not a plain Error.
      const p = Bun.spawnSync([process.execPath, MAIN, "serve", "--data", data, "--listen", "127.0.0.1:0", "--db", db], {
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, DEBUG: "1" },
      });
      expect({ code: p.exitCode, made: existsSync(data) }).toEqual({ code: 1, made: false });
      const told =
        `Cannot serve ${data} with this database: it was created by a gateway with another CA (wrong --db or --data?). ` +
        `A replica's --data must be a copy of the first replica's data dir (its CA and keys; gateway/README.md, Replicas): ` +
        `copy it to ${data}; a gateway of its own needs a database of its own. The CA and keys this start made there were removed.`;
      const lines = p.stderr.toString().split("\n");
      expect(lines).toContain(`gateway serve: ${told}`);
      expect(lines).toContain(`DataDirMismatchError: ${told}`);
    } finally {
      await first.stop();
    }
  } finally {
    await pg.stop();
  }
}, 120_000);

// Without zstd the gateway makes no layer deltas: every device that asks is told, the operator was not.
test("gateway serve on a host without zstd says at start that there are no layer deltas, and what to install", async () => {
  const without = await startGateway({ env: { PATH: "/nonexistent" } });
  const withZstd = await startGateway();
  try {
    const says = "gateway: zstd is not installed on this host: no layer deltas (devices fetch changed layers whole); install zstd 1.5 or later (Debian's zstd package)";
    expect(readFileSync(without.logFile, "utf8")).toContain(says);
    expect(readFileSync(withZstd.logFile, "utf8")).not.toContain("zstd");
  } finally {
    await without.stop();
    await withZstd.stop();
  }
}, 60_000);
