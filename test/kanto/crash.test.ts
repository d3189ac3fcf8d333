/**
 * `fioup agent` killed in the middle of an apply, and the broker going away:
 * the containers end whole (all new or all old), the feedback says which, and
 * the retained current state is true again after the broker restarts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import mqtt from "mqtt";
import { portAnswers, Proc } from "../harness/tmp.ts";
import { component, helloImage, KantoRig } from "./_rig.ts";

let rig: KantoRig;
let image: string;
const COUNT = 6;

beforeAll(async () => {
  rig = await KantoRig.start("crash");
  image = await rig.push("kanto/crash", helloImage("crash test"));
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const desired = (value: string) =>
  Array.from({ length: COUNT }, (_, i) => component(rig.name(`c${i}`), image, [{ key: "env", value: `V=${value}` }], value));

/** V of every container of the rig (undefined for a missing one); also fails on leftovers. */
async function versions(): Promise<(string | undefined)[]> {
  const ps = await rig.containers();
  expect([...ps.keys()].filter((k) => k.includes("fioup-old"))).toEqual([]);
  expect(ps.size).toBe(COUNT);
  const out: (string | undefined)[] = [];
  for (let i = 0; i < COUNT; i++) {
    const c = ps.get(rig.name(`c${i}`));
    if (c?.state !== "running") {
      // Say why, for whoever reads the failure: how the container ended, its last output, and the agent's feedback.
      const how = await rig.dockerd.docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Error}} started {{.State.StartedAt}} finished {{.State.FinishedAt}} {{json .Config.Env}}", rig.name(`c${i}`)).catch((e) => String(e));
      const logs = await rig.dockerd.docker("logs", "--tail", "20", rig.name(`c${i}`)).catch((e) => String(e));
      console.error(`container c${i} is ${c?.state}: ${how}\nlogs: ${logs}\nlast messages: ${JSON.stringify(rig.msgs.slice(-6).map((m) => ({ topic: m.topic, activityId: m.activityId, payload: m.payload }))).slice(0, 3000)}`);
    }
    expect(c?.state).toBe("running");
    const env = await rig.dockerd.docker("inspect", "-f", "{{json .Config.Env}}", rig.name(`c${i}`));
    out.push((JSON.parse(env) as string[]).find((e) => e.startsWith("V="))?.slice(2));
  }
  return out;
}

describe("fioup agent after a crash or a broker restart", () => {
  test("SIGKILL mid-apply, then restart: the containers are all new or all old, and the feedback says which", async () => {
    expect(await rig.apply("crash-base", desired("v0"))).toMatchObject({ status: "COMPLETED" });
    let current = "v0";
    const outcomes: string[] = [];
    // Kill after more and more feedback messages: early (identify/download), during update, during activation.
    // A whole apply publishes about this many feedback messages (the last one COMPLETED).
    const total = rig.feedbacks("crash-base").length;
    for (const [i, killAfter] of [3, 12, 24, total - 3, total - 2, total - 1].entries()) {
      const next = `v${i + 1}`;
      const id = `crash-${i}`;
      const since = rig.msgs.length;
      await rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId: id, payload: { domains: [{ id: "containers", components: desired(next) }] } }), { qos: 1 });
      await rig.waitFor(() => rig.feedbacks(id).length >= killAfter || rig.feedbacks(id).some((f) => f.status === "COMPLETED"), 60_000, since);
      await rig.agent!.kill();
      const killedAt = rig.feedbacks(id).length;
      await rig.startAgent();
      const final = await rig.final(id);
      const v = await versions();
      expect(new Set(v).size).toBe(1); // never half
      if (final.status === "COMPLETED") {
        expect(v[0]).toBe(next);
        current = next;
      } else {
        expect(final.status).toBe("INCOMPLETE");
        expect(v[0]).toBe(current);
        expect(final.message).toContain("restarted");
      }
      // An apply the kill interrupted says so in its last feedback.
      const finished = rig.feedbacks(id).slice(0, killedAt).some((f) => f.status === "COMPLETED");
      if (!finished) expect(final.message).toContain("the agent restarted");
      outcomes.push(`${killAfter}:${final.status}${finished ? "(before kill)" : ""}`);
    }
    console.error(`kill outcomes: ${outcomes.join(", ")}`);
    // The next desired state applies normally after all that.
    expect(await rig.apply("crash-after", desired("final"))).toMatchObject({ status: "COMPLETED" });
    expect(new Set(await versions())).toEqual(new Set(["final"]));
  }, 240_000);

  test("the broker stopped and restarted: the agent reconnects and republishes the retained current state", async () => {
    const conf = join(rig.broker.dir, "mosquitto.conf");
    await rig.broker.stop();
    await Bun.sleep(1500);
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
      expect(rig.agent!.logTail()).toContain("reconnecting in");
    } finally {
      await broker.stop();
    }
  }, 120_000);
});
