/**
 * `fioup agent` over its lifetime rather than one apply: the engine going away
 * in the middle of an apply while the agent runs on, and a second agent (another
 * `fioup agent`, or the one `fioup daemon` runs) on the same device, a retained
 * desired state across restarts, and the daemon's agent when the engine is not
 * there yet at its start.
 *
 * The agent reaches the engine through a unix-socket proxy the test can cut: the
 * cut lands right after the proxy forwarded the old container's stop request, so
 * the engine goes on with the stop (as a restarting dockerd's containers do)
 * while the agent's calls fail, and its rollback fails with them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { Proc, until } from "../harness/tmp.ts";
import { ROOT } from "../fioup/_setup.ts";
import { loadConfig } from "../../fioup/config.ts";
import { startAgentIfConfigured } from "../../fioup/agent/beside-daemon.ts";
import { component, helloImage, KantoRig } from "./_rig.ts";

let rig: KantoRig;
let slow: string;
let proxy: EngineProxy;
const n = (x: string) => rig.name(x);

/** A unix-socket proxy to the engine that can be cut (connections reset, socket gone) and restored. */
class EngineProxy {
  private server?: Server;
  private readonly socks = new Set<Socket>();
  /** Called with each chunk a client sends, before it is forwarded. */
  onRequest?: (text: string) => void;

  constructor(
    readonly path: string,
    private readonly target: string,
  ) {}

  async listen(): Promise<void> {
    rmSync(this.path, { force: true });
    const server = createServer((client) => {
      const engine = connect(this.target);
      this.socks.add(client).add(engine);
      client.on("data", (buf) => {
        engine.write(buf);
        this.onRequest?.(buf.toString("latin1"));
      });
      engine.on("data", (buf) => client.write(buf));
      const end = () => {
        client.destroy();
        engine.destroy();
        this.socks.delete(client);
        this.socks.delete(engine);
      };
      client.on("close", end).on("error", end);
      engine.on("close", end).on("error", end);
    });
    await new Promise<void>((resolve) => server.listen(this.path, resolve));
    this.server = server;
  }

  /** The engine is gone for the agent: open connections reset, new ones find no socket. */
  cut(): void {
    this.server?.close();
    this.server = undefined;
    for (const s of this.socks) s.destroy();
    this.socks.clear();
    rmSync(this.path, { force: true });
  }
}

beforeAll(async () => {
  rig = await KantoRig.start("life");
  slow = await rig.push("kanto/life-slow", { ...helloImage("slow stop"), stopSignal: "SIGTERM" });
  proxy = new EngineProxy(join(rig.dir, "engine.sock"), rig.dockerd.socket);
  await proxy.listen();
  const toml = join(rig.dir, "var/sota/sota.toml");
  writeFileSync(toml, readFileSync(toml, "utf8").replace(/^docker_host = .*$/m, `docker_host = "unix://${proxy.path}"`));
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  proxy?.cut();
  await rig?.stop();
});

const publish = (activityId: string, components: unknown[]) =>
  rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId, timestamp: Date.now(), payload: { domains: [{ id: "containers", components }] } }), { qos: 1 });

describe("the engine goes away during an apply", () => {
  test("the running agent finishes the failed rollback once the engine is back, before the next desired state: the old container runs again", async () => {
    const svc = n("svc");
    const state = (v: string) => [component(svc, slow, [{ key: "env", value: `V=${v}` }, { key: "restartTimeout", value: "3" }], v)];
    expect(await rig.apply("o-0", state("a"))).toMatchObject({ status: "COMPLETED" });
    const id = (await rig.containers()).get(svc)!.id;

    // The engine drops out as it receives the old container's stop: the stop goes on without the agent.
    proxy.onRequest = (text) => {
      if (text.includes(`/containers/${id}/stop`)) {
        proxy.onRequest = undefined;
        setTimeout(() => proxy.cut(), 100);
      }
    };
    await publish("o-1", state("b"));
    await rig.waitFor((m) => m.activityId === "o-1" && /rollback failed/.test(m.payload?.message ?? ""));
    // While the engine is away a new desired state is refused, saying why.
    const refused = await rig.apply("o-x", state("c"));
    expect(refused.status).toBe("IDENTIFICATION_FAILED");
    expect(refused.message).toContain("the rollback of activity o-1 is not finished");
    await until(`${svc} to stop (its stop timeout is 3 s)`, () => rig.dockerd.docker("inspect", "-f", "{{.State.Running}}", svc).then((s) => s.trim()), (r) => r === "false", 30_000, 100);
    await proxy.listen();

    // The same state as before o-1: the old container must run again, not stay exited.
    expect(await rig.apply("o-2", state("a"))).toMatchObject({ status: "COMPLETED" });
    const ps = await rig.containers();
    expect([...ps.keys()]).toEqual([svc]);
    expect(ps.get(svc)).toMatchObject({ id, state: "running" });
    const ends = rig.feedbacks("o-1").filter((f) => ["COMPLETED", "INCOMPLETE"].includes(f.status));
    expect(ends).toHaveLength(1);
    expect(ends[0].message).toContain("the previous containers were restored");
    // No record is left behind in the state dir once its end is acknowledged.
    await until("activity.json to go", () => existsSync(join(rig.dir, "var/sota/agent/activity.json")), (e) => !e, 10_000, 100);
  }, 120_000);

  test("the engine going away in the middle of the rollback leaves it to be retried, not ended incomplete: the old container runs again", async () => {
    const svc = n("mid");
    const ok = [component(svc, slow, [{ key: "restartTimeout", value: "1" }], "a")];
    // Exits at once: its activation fails, and the rollback begins with the engine there.
    const failing = [component(svc, slow, [{ key: "restartTimeout", value: "1" }, { key: "cmd", value: "false" }, { key: "restartPolicy", value: "no" }], "b")];
    expect(await rig.apply("m-0", ok)).toMatchObject({ status: "COMPLETED" });
    const id = (await rig.containers()).get(svc)!.id;

    // The engine drops out as the rollback removes the new container: restoring the old one finds no engine.
    proxy.onRequest = (text) => {
      if (/^DELETE \/[^ ]*\/containers\//.test(text)) {
        proxy.onRequest = undefined;
        proxy.cut();
      }
    };
    await publish("m-1", failing);
    await rig.waitFor((m) => m.activityId === "m-1" && /rollback failed/.test(m.payload?.message ?? ""));
    await proxy.listen();

    const end = await rig.final("m-1");
    expect(end.status).toBe("INCOMPLETE");
    expect(end.message).toContain("the previous containers were restored");
    expect(end.message).not.toContain("rollback incomplete");
    expect(rig.feedbacks("m-1").filter((f) => ["COMPLETED", "INCOMPLETE"].includes(f.status))).toHaveLength(1);
    const ps = await rig.containers();
    expect([...ps.keys()].filter((k) => k.startsWith(svc))).toEqual([svc]);
    expect(ps.get(svc)).toMatchObject({ id, state: "running" });
  }, 120_000);
});

describe("one agent per state dir", () => {
  test("a second `fioup agent` exits 13 naming the running one's PID; the daemon's agent waits with a log line and starts once that agent stops", async () => {
    const sotaDir = join(rig.dir, "var/sota");
    const second = Proc.start({
      name: "second fioup agent",
      cmd: [process.execPath, join(ROOT, "fioup/main.ts"), "agent", "--sota-dir", sotaDir],
      env: { FIOUP_ROOT: rig.dir },
      cwd: ROOT,
      logFile: join(rig.dir, "second-agent.log"),
    });
    const code = await Promise.race([second.exitedPromise, Bun.sleep(20_000).then(() => undefined)]);
    if (code === undefined) await second.stop(5000);
    expect(code).toBe(13);
    expect(second.logTail(3000)).toContain(`another agent (PID ${rig.agent!.pid}) runs with the state dir ${join(sotaDir, "agent")}`);

    // The daemon's agent waits while the separate one runs, and takes over once it stops.
    const lines: string[] = [];
    const said = () => lines.join("\n");
    const ac = new AbortController();
    const dockerHost = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = rig.dockerd.host; // the engine the daemon's agent will use, as in the daemon's environment
    const embedded = startAgentIfConfigured(loadConfig({ root: rig.dir, sotaDir }, () => {}), ac.signal, (l) => lines.push(l));
    const separate = rig.agent!.pid;
    try {
      await until("the daemon to say it runs without its agent", said, (l) => l.includes("agent: not started"), 10_000, 50);
      expect(said()).toContain(`agent: not started, the daemon runs without it: Cannot start the agent: another agent (PID ${separate})`);
      expect(said()).toContain("it starts its own once that agent stops");
      // The running agent still applies desired states.
      expect(await rig.apply("one-1", [])).toMatchObject({ status: "COMPLETED" });
      expect(lines.filter((l) => l.includes("agent: not started"))).toHaveLength(1); // looked at again quietly

      await rig.agent!.stop(10_000);
      await until("the daemon's own agent to start", said, (l) => l.includes("agent: connected to"), 30_000, 100);
      expect(said()).toContain(`agent: the agent with PID ${separate} stopped: the daemon's own starts`);
      expect(await rig.apply("one-2", [])).toMatchObject({ status: "COMPLETED" });
    } finally {
      ac.abort();
      await embedded;
      if (dockerHost === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = dockerHost;
    }
    await rig.startAgent(); // the separate agent again, for the tests that follow
  }, 60_000);
});

describe("a desired state is applied once", () => {
  test("a retained desired state that arrives again after a restart is ignored (no second end, nothing brought back); a new older one is refused", async () => {
    const img = await rig.push("kanto/life-hello", helloImage("once"));
    const t0 = Date.now();
    const body = (activityId: string, names: string[], timestamp: number) =>
      JSON.stringify({ activityId, timestamp, payload: { domains: [{ id: "containers", components: names.map((x) => component(n(x), img)) }] } });
    try {
      await rig.client.publishAsync("containersupdate/desiredstate", body("r-1", ["a", "b"], t0), { qos: 1, retain: true });
      expect(await rig.final("r-1")).toMatchObject({ status: "COMPLETED" });
      await rig.client.publishAsync("containersupdate/desiredstate", body("r-2", ["a"], t0 + 1000), { qos: 1 });
      expect(await rig.final("r-2")).toMatchObject({ status: "COMPLETED" });
      expect([...(await rig.containers()).keys()].sort()).toEqual([n("a")]);

      await rig.agent!.stop(10_000);
      await rig.startAgent();
      await until("the restarted agent to ignore the retained r-1", () => rig.agent!.logTail(20_000), (log) => log.includes("ignored desired state r-1"), 20_000, 100);
      // A new desired state older than the last one applied is refused, saying why: the back end never heard of it.
      await rig.client.publishAsync("containersupdate/desiredstate", body("r-0", ["a", "b"], t0 - 1000), { qos: 1 });
      expect(await rig.final("r-0")).toMatchObject({ status: "IDENTIFICATION_FAILED", message: expect.stringContaining("is older than that of the last desired state applied") });
      expect([...(await rig.containers()).keys()].sort()).toEqual([n("a")]);
      expect(rig.feedbacks("r-1").filter((f) => f.status === "COMPLETED")).toHaveLength(1);
    } finally {
      await rig.client.publishAsync("containersupdate/desiredstate", "", { qos: 1, retain: true });
    }
  }, 120_000);
});

describe("the record of finished activities cannot be written", () => {
  test("the end is still published, and the log says what was not recorded", async () => {
    const path = join(rig.dir, "var/sota/agent/finished.json");
    rmSync(path, { force: true });
    mkdirSync(path); // a folder where the file goes: every write of it fails
    try {
      expect(await rig.apply("nf-1", [])).toMatchObject({ status: "COMPLETED" });
      expect(rig.agent!.logTail(20_000)).toContain(`cannot record that activity nf-1 ended in ${path}`);
    } finally {
      rmSync(path, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("the agent inside fioup daemon", () => {
  test("an engine not there at its start: the agent is started again with backoff, and runs once the engine answers", async () => {
    const sotaDir = join(rig.dir, "embedded/var/sota");
    const socket = join(rig.dir, "embedded/engine.sock");
    mkdirSync(sotaDir, { recursive: true });
    writeFileSync(
      join(sotaDir, "sota.toml"),
      ["[fioup]", `docker_host = "unix://${socket}"`, "[mqtt]", `url = "${rig.broker.url}"`, `instance = "${rig.tag}e"`, `state_dir = "${join(rig.dir, "embedded/agent")}"`, ""].join("\n"),
    );
    const lines: string[] = [];
    const ac = new AbortController();
    const since = rig.msgs.length;
    const embedded = startAgentIfConfigured(loadConfig({ root: join(rig.dir, "embedded"), sotaDir }, () => {}), ac.signal, (l) => lines.push(l));
    const engine = new EngineProxy(socket, rig.dockerd.socket);
    try {
      await until("the agent to fail and say it starts again", () => lines.join("\n"), (l) => l.includes("starting it again in 1 s (the delay doubles up to 30 s)"), 10_000, 50);
      expect(lines[0]).toStartWith(`agent: stopped: Cannot reach the Docker Engine at ${socket}`);
      await engine.listen();
      await rig.waitFor((m) => m.topic === "containersupdate/currentstate" && m.activityId.startsWith("initial-current-state-"), 30_000, since);
      expect(lines.join("\n")).toContain("agent: connected to");
    } finally {
      ac.abort();
      await embedded;
      engine.cut();
    }
  }, 60_000);
});
