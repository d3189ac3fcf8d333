/**
 * `fioup agent` and a broker link that fails at the wrong moment: an activity that
 * ends while the broker is away still has its end told once the agent is back (MQTT.js
 * drops the messages it had not delivered when it reconnects).
 *
 * The agent reaches the broker through a TCP proxy the test takes down
 * (test/harness/fault-proxy.ts); the back end talks to the broker directly and
 * hears everything the agent gets through.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { until } from "../harness/tmp.ts";
import { component, helloImage, KantoRig } from "./_rig.ts";

let rig: KantoRig;
let proxy: FaultProxy;
let slow: string;

beforeAll(async () => {
  rig = await KantoRig.start("link");
  proxy = await startFaultProxy(0, rig.broker.port);
  // PID 1 `sleep` ignores SIGTERM: its stop takes the whole restartTimeout, which keeps the apply going while the link is down.
  slow = await rig.push("kanto/link-slow", { ...helloImage("slow stop"), stopSignal: "SIGTERM" });
  await rig.startAgent(["--mqtt", `mqtt://127.0.0.1:${proxy.port}`]);
}, 120_000);

afterAll(async () => {
  await rig?.stop();
  await proxy?.close();
});

describe("the broker link drops", () => {
  test("an activity that ends while the broker is away has its end published once the agent is back, and its record goes", async () => {
    const svc = rig.name("svc");
    const state = (v: string) => [component(svc, slow, [{ key: "env", value: `V=${v}` }, { key: "restartTimeout", value: "3" }], v)];
    expect(await rig.apply("l-0", state("a"))).toMatchObject({ status: "COMPLETED" });

    await rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId: "l-1", timestamp: Date.now(), payload: { domains: [{ id: "containers", components: state("b") }] } }), { qos: 1 });
    // The old container's stop takes 3 s: the link goes down now, the apply ends before it is back.
    await rig.waitFor((m) => m.activityId === "l-1" && (m.payload?.actions ?? []).some((x: any) => x.status === "UPDATING"));
    const from = rig.agent!.logSize();
    await proxy.down(10_000);
    expect(rig.agent!.logSince(from)).toContain("activity l-1: COMPLETED");
    expect(rig.feedbacks("l-1").filter((f) => f.status === "COMPLETED")).toHaveLength(0);

    expect(await rig.final("l-1", 60_000)).toMatchObject({ status: "COMPLETED" });
    expect(rig.agent!.logSince(from)).toContain("activity l-1: the broker did not acknowledge its end (COMPLETED): publishing it again");
    await until("activity.json to go", () => existsSync(join(rig.dir, "var/sota/agent/activity.json")), (e) => !e, 10_000, 100);
    expect(rig.feedbacks("l-1").filter((f) => f.status === "COMPLETED")).toHaveLength(1);
    expect((await rig.containers()).get(svc)).toMatchObject({ state: "running" });
  }, 120_000);
});
