/**
 * `fioup agent` killed in the middle of an apply, and the broker going away:
 * the containers end whole (all new or all old) and running, the feedback says
 * which, and the retained current state is true again after the broker restarts.
 *
 * The agent kills itself with SIGKILL at a named point (FIOUP_FAULT=agent:<point>,
 * see fioup/fault.ts), so where a kill lands does not depend on how loaded the
 * machine is. Default: one point in each part of an apply; RELIABILITY_FULL=1
 * (`npm run reliability`): every point, at every container.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { portAnswers, Proc } from "../harness/tmp.ts";
import { FULL, Tally } from "../reliability/_tally.ts";
import { component, helloImage, KantoRig } from "./_rig.ts";

let rig: KantoRig;
let image: string;
const COUNT = 5;
const tally = new Tally("kanto-kill");
/** The version the c* containers run (all of them: never half). */
let current = "v0";

/** `agent:<point>#n`: the n-th time the agent reaches the point (FIOUP_FAULT_NTH). */
const EVERY = [
  "agent:received", "agent:downloading", "agent:downloaded", "agent:updating",
  ...["stopped", "renamed", "created"].flatMap((p) => Array.from({ length: COUNT }, (_, i) => `agent:${p}#${i + 1}`)),
  "agent:updated", "agent:activating",
  ...Array.from({ length: COUNT }, (_, i) => `agent:started#${i + 1}`),
  "agent:activated",
  ...Array.from({ length: COUNT }, (_, i) => `agent:removed#${i + 1}`),
  "agent:done",
];
const POINTS = FULL ? EVERY : ["agent:received", "agent:activated", "agent:stopped#2", "agent:started#3"];
/** From here on the new containers have all started: a kill ends COMPLETED, before it INCOMPLETE. */
const COMPLETES = /^agent:(activated|removed|done)/;
/** Points a recovery also passes (rollback, cleanup): the agent that recovers must not carry them. */
const RECOVERY_PASSES = /^agent:(rolling-back|removed|done)/;

beforeAll(async () => {
  rig = await KantoRig.start("crash");
  image = await rig.push("kanto/crash", helloImage("crash test"));
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  tally.print();
  await rig?.stop();
});

const desired = (value: string) =>
  Array.from({ length: COUNT }, (_, i) => component(rig.name(`c${i}`), image, [{ key: "env", value: `V=${value}` }], value));

const publish = (activityId: string, components: unknown[]) =>
  rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId, payload: { domains: [{ id: "containers", components }] } }), { qos: 1 });

/** The environment that makes the agent kill itself at `point`, reporting to `report`. */
function faultEnv(point: string, report: string): Record<string, string> {
  const [fault, nth = "1"] = point.split("#");
  return { FIOUP_FAULT: fault!, FIOUP_FAULT_NTH: nth, FIOUP_FAULT_REPORT: report };
}

/** V of the named containers (all must run); also fails on leftovers and on containers of other names. */
async function versions(names = Array.from({ length: COUNT }, (_, i) => rig.name(`c${i}`))): Promise<(string | undefined)[]> {
  const ps = await rig.containers();
  expect([...ps.keys()].filter((k) => k.includes("fioup-old"))).toEqual([]);
  expect([...ps.keys()].sort()).toEqual([...names].sort());
  const out: (string | undefined)[] = [];
  for (const name of names) {
    const c = ps.get(name);
    if (c?.state !== "running") {
      // Say why, for whoever reads the failure: how the container ended, its last output, what the agent did.
      const how = await rig.dockerd.docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Error}} started {{.State.StartedAt}} finished {{.State.FinishedAt}} {{json .Config.Env}}", name).catch((e) => String(e));
      const logs = await rig.dockerd.docker("logs", "--tail", "20", name).catch((e) => String(e));
      console.error(`container ${name} is ${c?.state}: ${how}\nlogs: ${logs}\nagent log:\n${rig.agent?.logTail(3000)}`);
    }
    expect(c?.state).toBe("running");
    const env = await rig.dockerd.docker("inspect", "-f", "{{json .Config.Env}}", name);
    out.push((JSON.parse(env) as string[]).find((e) => e.startsWith("V="))?.slice(2));
  }
  return out;
}

describe("fioup agent after a crash or a broker restart", () => {
  test("SIGKILL at each named point of an apply, then restart: the containers all run, all new or all old, and the feedback says which", async () => {
    expect(await rig.apply("crash-base", desired("v0"))).toMatchObject({ status: "COMPLETED" });
    const report = join(rig.dir, "fault.jsonl");
    // The agent that recovers from one kill already carries the next point (one start per case), unless it would pass it while recovering.
    let carrying: string | undefined;
    for (const [i, point] of POINTS.entries()) {
      const t0 = Date.now();
      const next = `v${i + 1}`;
      const id = `crash-${i}`;
      rmSync(report, { force: true });
      if (carrying !== point) {
        await rig.agent!.stop(5000);
        await rig.startAgent([], faultEnv(point, report));
      }
      await publish(id, desired(next));
      const died = await Promise.race([rig.agent!.exitedPromise.then(() => true), Bun.sleep(60_000).then(() => false)]);
      const hit = died && existsSync(report) && readFileSync(report, "utf8").includes(`"point":"${point.split("#")[0]}"`);
      if (!hit) {
        tally.record(point, "not-tried", "the agent never reached the point");
        throw new Error(`The agent never reached kill point ${point}`);
      }
      const following = POINTS[i + 1];
      carrying = following && !RECOVERY_PASSES.test(following) ? following : undefined;
      await rig.startAgent([], carrying ? faultEnv(carrying, report) : {});
      const final = await rig.final(id);
      try {
        const v = await versions();
        expect(new Set(v).size).toBe(1); // never half
        if (COMPLETES.test(point)) {
          expect(final.status).toBe("COMPLETED");
          expect(v[0]).toBe(next);
          current = next;
        } else {
          expect(final.status).toBe("INCOMPLETE");
          expect(final.message).toContain("the agent restarted");
          expect(v[0]).toBe(current);
        }
        tally.record(point, "survived", `${final.status} in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${final.message ?? ""}`);
      } catch (err) {
        tally.record(point, "failed", `${final.status}: ${(err as Error).message}`);
        throw err;
      }
    }
    if (carrying) {
      await rig.agent!.stop(5000);
      await rig.startAgent();
    }
  }, FULL ? 900_000 : 240_000);

  test("SIGKILL while old containers take seconds to stop: the rollback waits for those stops, and the old containers run again", async () => {
    // busybox sleep as PID 1 ignores SIGTERM: each stop of s1 and s2 lasts their whole stop timeout.
    const slow = await rig.push("kanto/slow-stop", { ...helloImage("slow stop"), stopSignal: "SIGTERM" });
    const STOP_S = 5;
    const names = Array.from({ length: 3 }, (_, i) => rig.name(`s${i}`));
    // s0 (stop signal SIGKILL) stops at once and the kill lands there, while the engine goes on stopping s1 and s2 for the dead agent.
    const slowState = (v: string) =>
      names.map((n, i) => component(n, i === 0 ? image : slow, [{ key: "env", value: `V=${v}` }, ...(i === 0 ? [] : [{ key: "restartTimeout", value: String(STOP_S) }])], v));
    // After the kills of the test before, the next desired state (the same c*, new s*) applies normally.
    const keep = desired(current);
    expect(await rig.apply("slow-base", [...keep, ...slowState("a")])).toMatchObject({ status: "COMPLETED" });
    const report = join(rig.dir, "fault.jsonl");
    rmSync(report, { force: true });
    await rig.agent!.stop(5000);
    await rig.startAgent([], faultEnv("agent:stopped#1", report));
    try {
      await publish("slow-1", [...keep, ...slowState("b")]);
      await rig.agent!.exitedPromise;
      const killedAt = Date.now();
      expect(existsSync(report)).toBe(true);
      await rig.startAgent();
      const final = await rig.final("slow-1");
      expect(final.status).toBe("INCOMPLETE");
      expect(final.message).toContain("the previous containers were restored");
      // A stop left under way would end its container after the rollback: look once those stops are surely over.
      await Bun.sleep(Math.max(0, killedAt + (STOP_S + 1) * 1000 - Date.now()));
      expect(new Set(await versions([...keep.map((c) => c.id), ...names]))).toEqual(new Set([current, "a"]));
    } finally {
      await rig.dockerd.docker("rm", "-f", ...names).catch(() => {});
    }
  }, 120_000);

  test("the broker stopped and restarted: the agent reconnects and republishes the retained current state", async () => {
    const conf = join(rig.broker.dir, "mosquitto.conf");
    // agent.log is appended to by every agent of this file: look only at what comes after this point.
    const from = rig.agent!.logSize();
    await rig.broker.stop();
    // The agent saw the connection close and backs off (its first retry comes 1 s later).
    await rig.agent!.waitForLog("reconnecting in", 15_000, from);
    const broker = Proc.start({ name: "mosquitto", cmd: ["mosquitto", "-c", conf], logFile: join(rig.broker.dir, "mosquitto-2.log") });
    try {
      await broker.waitUntil(() => portAnswers(rig.broker.port), "listener", 15_000);
      // A fresh back end subscribing now gets the retained state only if the agent published it again.
      const client = await mqtt.connectAsync(rig.broker.url, { clientId: `late-${process.pid}` });
      try {
        const got = new Promise<any>((resolve) => client.on("message", (_t, b) => b.length && resolve(JSON.parse(b.toString()))));
        await client.subscribeAsync("containersupdate/currentstate", { qos: 1 });
        const msg = await Promise.race([got, Bun.sleep(30_000).then(() => undefined)]);
        expect(msg?.activityId).toStartWith("initial-current-state-");
        const names = msg.payload.softwareNodes.filter((x: any) => x.type === "CONTAINER").map((x: any) => x.id.replace("containers:", "")).sort();
        expect(names).toEqual([...(await rig.containers()).keys()].sort());
        // And it takes desired states again.
        const id = "after-broker-restart";
        const done = new Promise<any>((resolve) =>
          client.on("message", (_t, b) => {
            const d = b.length ? JSON.parse(b.toString()) : undefined;
            if (d?.activityId === id && ["COMPLETED", "INCOMPLETE"].includes(d.payload.status)) resolve(d.payload);
          }),
        );
        await client.subscribeAsync("containersupdate/desiredstatefeedback", { qos: 1 });
        await client.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId: id, payload: { domains: [{ id: "containers", components: desired("final") }] } }), { qos: 1 });
        expect(await done).toMatchObject({ status: "COMPLETED" });
      } finally {
        await client.endAsync(true);
      }
      // This agent lost the broker and connected again (not a line left by an earlier agent or outage).
      expect(rig.agent!.logSince(from)).toMatch(/reconnecting in[^]*connected to /);
    } finally {
      await broker.stop();
    }
  }, 120_000);
});
