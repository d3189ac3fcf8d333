/**
 * `npm run demo`: the whole system end to end on one machine, on loopback.
 *
 * Installs what is missing (Docker, docker-compose, busybox-static), starts a
 * private dockerd and the gateway with its embedded registry, publishes a
 * sample containers repo (two apps built locally), registers a device, runs
 * `fioup update`, shows the app answering, publishes a change, shows the device
 * updating to it, and prints where to look next. Everything it starts is
 * stopped by PID on exit and on Ctrl-C.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (n: number, s: string) => console.log(`\n${bold(`[${n}] ${s}`)}`);
const note = (s: string) => console.log(`    ${s}`);

const children: { pid: number; name: string }[] = [];
let cleanup: (() => Promise<void>)[] = [];
let cleaning = false;
async function stopAll(code: number): Promise<never> {
  if (!cleaning) {
    cleaning = true;
    console.log(`\n${bold("cleaning up")}`);
    for (const c of children.reverse()) {
      try {
        process.kill(c.pid, "SIGTERM");
        note(`stopped ${c.name} (pid ${c.pid})`);
      } catch {}
    }
    for (const f of cleanup.reverse()) await f().catch(() => {});
  }
  process.exit(code);
}
process.on("SIGINT", () => void stopAll(130));
process.on("SIGTERM", () => void stopAll(143));

/** Runs a command, streaming its stderr (progress) through, returning stdout. */
async function sh(cmd: string[], opts: { env?: Record<string, string>; quiet?: boolean; cwd?: string } = {}): Promise<string> {
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdout: "pipe",
    stderr: opts.quiet ? "pipe" : "inherit",
  });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  if (code !== 0) {
    const err = opts.quiet && proc.stderr ? await new Response(proc.stderr as ReadableStream).text() : "";
    throw new Error(`${cmd.slice(0, 3).join(" ")} ... exited ${code}${err ? `: ${err.trim()}` : ""}\n${out}`);
  }
  return out;
}

async function ensurePackages(): Promise<void> {
  // The same idempotent installer that `npm test` and CI use, asked for the demo's subset.
  await sh(["bash", join(ROOT, "scripts/setup.sh"), "--demo"]);
  note("Docker, docker-compose and busybox-static are installed");
}

async function get(url: string): Promise<string> {
  for (let i = 0; i < 40; i++) {
    try {
      const r = await fetch(url);
      return (await r.text()).trim();
    } catch {
      await Bun.sleep(250);
    }
  }
  throw new Error(`${url} does not answer`);
}

async function main(): Promise<void> {
  console.log(bold("compose-ota demo: publish → gateway → device update → change → update again"));

  step(1, "Checking system packages");
  await ensurePackages();

  // The harness modules start services privately under a temp dir and stop them by PID.
  const { startDockerd } = await import("../test/harness/dockerd.ts");
  const { busyboxImageTar } = await import("../test/harness/images.ts");
  const { tempDir, freePort } = await import("../test/harness/tmp.ts");

  step(2, "Starting a private Docker engine (own data dir and socket, no network beyond this machine)");
  const dockerd = await startDockerd();
  cleanup.push(() => dockerd.stop());
  note(`DOCKER_HOST=${dockerd.host}`);
  await dockerd.docker("load", "-i", await busyboxImageTar({ tag: "demo/busybox:latest" }));
  note("loaded a busybox base image built locally (this machine has no Internet)");

  const work = await tempDir("ota-demo-");
  const data = join(work, "gateway");
  const port = await freePort();
  const server = `https://127.0.0.1:${port}`;
  step(3, `Starting the gateway on ${server} (OTA service, device gateway, TUF repo, embedded registry)`);
  const gw = Bun.spawn([BUN, "gateway/main.ts", "serve", "--data", data, "--listen", `127.0.0.1:${port}`, "--public-url", server], {
    cwd: ROOT,
    stdout: "ignore",
    stderr: "pipe",
  });
  children.push({ pid: gw.pid, name: "gateway" });
  const reader = (gw.stderr as ReadableStream<Uint8Array>).getReader();
  let log = "";
  const deadline = Date.now() + 30_000;
  while (!log.includes("gateway listening on")) {
    if (Date.now() > deadline) throw new Error(`the gateway did not start:\n${log}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`the gateway exited:\n${log}`);
    log += new TextDecoder().decode(value);
  }
  void (async () => {
    while (!(await reader.read()).done) {}
  })();
  const adminToken = (await Bun.file(join(data, "admin-token")).text()).trim();
  note(`data dir ${data}; admin token in ${join(data, "admin-token")} (mode 0600)`);

  step(4, "Writing a sample containers repo: two apps, one image built from a Dockerfile");
  const repo = join(work, "containers");
  const appPort = await freePort();
  const writeRepo = async (message: string) => {
    await mkdir(join(repo, "web", "site"), { recursive: true });
    await writeFile(join(repo, "web", "Dockerfile"), "FROM demo/busybox:latest\nCOPY site /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n");
    await writeFile(join(repo, "web", "site", "index.html"), `${message}\n`);
    await writeFile(
      join(repo, "web", "docker-compose.yml"),
      `services:\n  web:\n    image: web\n    build: .\n    init: true\n    restart: unless-stopped\n    ports:\n      - "127.0.0.1:${appPort}:8080"\n`,
    );
    await writeFile(join(repo, "web", ".composeappignores"), "Dockerfile\nsite\n");
    await mkdir(join(repo, "ticker"), { recursive: true });
    await writeFile(join(repo, "ticker", "Dockerfile"), "FROM demo/busybox:latest\nCMD [\"sh\", \"-c\", \"while true; do date; sleep 30; done\"]\n");
    await writeFile(join(repo, "ticker", "docker-compose.yml"), "services:\n  ticker:\n    image: ticker\n    build: .\n    restart: unless-stopped\n");
  };
  const git = (...args: string[]) =>
    sh(["git", "-C", repo, ...args], {
      quiet: true,
      env: { GIT_AUTHOR_NAME: "demo", GIT_AUTHOR_EMAIL: "demo@example.invalid", GIT_COMMITTER_NAME: "demo", GIT_COMMITTER_EMAIL: "demo@example.invalid" },
    });
  await writeRepo("Hello from version 1");
  await sh(["git", "init", "-q", "-b", "main", repo], { quiet: true });
  await git("add", "-A");
  await git("commit", "-qm", "v1");
  note(`${repo}: web/ (httpd on 127.0.0.1:${appPort}), ticker/`);

  const hwid = process.arch === "arm64" ? "arm64-linux" : "x86_64-linux";
  const publish = async () =>
    sh(
      [BUN, "gateway/main.ts", "publish", "--containers", repo, "--ref", "refs/heads/main", "--server", server, "--token", adminToken, "--hwid", hwid],
      { env: dockerd.env },
    );
  step(5, "gateway publish: build, pin every image by digest, bundle each app, sign the target");
  console.log((await publish()).replace(/^/gm, "    "));

  step(6, "Registering a device (key and CSR made on the device; the token pins the gateway CA)");
  const token = (await sh([BUN, "gateway/main.ts", "tokens", "create", "--data", data, "--format", "json"], { quiet: true })).trim();
  const regToken = JSON.parse(token).token as string;
  const device = join(work, "device");
  const fioupEnv = { ...dockerd.env, FIOUP_ROOT: device };
  await sh([BUN, "fioup/main.ts", "register", "--server", server, "--token", regToken, "--name", "demo-device", "--tag", "main", "--hwid", hwid], {
    env: fioupEnv,
  });
  note(`device files under ${device}/var/sota`);

  step(7, "fioup update: verify TUF metadata, fetch only missing blobs, install, start");
  await sh([BUN, "fioup/main.ts", "update"], { env: fioupEnv });
  note(`curl http://127.0.0.1:${appPort}/ → ${bold(await get(`http://127.0.0.1:${appPort}/`))}`);

  step(8, "Changing the web app and publishing again");
  await writeRepo("Hello from version 2");
  await git("commit", "-qam", "v2");
  console.log((await publish()).replace(/^/gm, "    "));

  step(9, "fioup update: only the changed blobs are fetched");
  await sh([BUN, "fioup/main.ts", "update"], { env: fioupEnv });
  note(`curl http://127.0.0.1:${appPort}/ → ${bold(await get(`http://127.0.0.1:${appPort}/`))}`);
  console.log((await sh([BUN, "fioup/main.ts", "status"], { env: fioupEnv, quiet: true })).replace(/^/gm, "    "));

  step(10, "What the gateway knows");
  console.log((await sh([BUN, "gateway/main.ts", "devices", "list", "--data", data], { quiet: true })).replace(/^/gm, "    "));
  const list = JSON.parse(await sh([BUN, "gateway/main.ts", "devices", "list", "--data", data, "--format", "json"], { quiet: true }));
  const uuid = (list.devices ?? list)[0]?.uuid;
  if (uuid) console.log((await sh([BUN, "gateway/main.ts", "devices", "show", uuid, "--data", data], { quiet: true })).replace(/^/gm, "    "));

  // Off a terminal nobody can press Enter, so everything stops (and the temp dirs go) right after this.
  console.log(`\n${bold("Done.")} ${process.stdin.isTTY ? "Where to look next:" : "On a terminal, the demo keeps running at this point so you can try:"}`);
  note(`npm run gateway -- devices list --data ${data}`);
  note(`npm run gateway -- devices show ${uuid ?? "<uuid>"} --data ${data}    (update history, app states)`);
  note(`npm run gateway -- targets list --data ${data}`);
  note(`${server}/ui/   the fleet dashboard in a browser: sign in with the admin token in ${join(data, "admin-token")}`);
  note(`FIOUP_ROOT=${device} DOCKER_HOST=${dockerd.host} npm run fioup -- status`);
  note("npm run build   (dist/gateway-linux-x64, dist/fioup-linux-arm64, ...)");
  if (process.stdin.isTTY) {
    note("The gateway, the device's apps and the private Docker engine keep running so you can try these:");
    note("press Enter (or Ctrl-C) to stop everything and clean up.");
    await new Promise<void>((resolve) => {
      process.stdin.once("data", () => resolve());
      process.stdin.resume();
    });
    process.stdin.pause();
  } else {
    note("(not a terminal: everything stops and is removed now; run `npm run demo` on a terminal to try them)");
  }
}

if (!existsSync(join(ROOT, "node_modules"))) {
  console.error("run `npm install` first");
  process.exit(2);
}
main().then(
  () => stopAll(0),
  (err) => {
    console.error(`\ndemo failed: ${err instanceof Error ? err.message : err}`);
    return stopAll(1);
  },
);
