/**
 * `fioup agent` and a broker link that fails at the wrong moment: an activity that
 * ends while the broker is away still has its end told once the agent is back (MQTT.js
 * drops the messages it had not delivered when it reconnects); and a broker whose ACL refuses
 * the agent's subscription to desired states, where the agent does not stay connected and deaf
 * but connects again with backoff until the broker accepts it.
 *
 * The agent reaches the broker through a TCP proxy the test takes down
 * (test/harness/fault-proxy.ts); the back end talks to the broker directly and
 * hears everything the agent gets through.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { freePort, portAnswers, Proc, run, tempDir, until } from "../harness/tmp.ts";
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

/**
 * A second mosquitto whose dynamic-security plugin refuses anonymous clients the subscription to
 * desired states (SUBACK 0x80); `allow()` lifts that through the plugin's $CONTROL topic. (The
 * plugin then disconnects that role's clients, which rescues an agent that stayed connected and
 * deaf: a broker that does not is left to the count of connections below.)
 */
async function aclBroker(): Promise<{ url: string; log: string; allow(): Promise<void>; stop(): Promise<void> }> {
  const dir = await tempDir("mosquitto-acl-");
  const port = await freePort();
  const dynsec = join(dir, "dynsec.json");
  expect((await run(["mosquitto_ctrl", "dynsec", "init", dynsec, "admin", "s3cret"])).code).toBe(0);
  const d = JSON.parse(readFileSync(dynsec, "utf8"));
  d.defaultACLAccess = { publishClientSend: true, publishClientReceive: true, subscribe: true, unsubscribe: true };
  d.roles.push({ rolename: "device", acls: [{ acltype: "subscribeLiteral", topic: "containersupdate/desiredstate", priority: 0, allow: false }] });
  d.groups = [...(d.groups ?? []), { groupname: "anon", roles: [{ rolename: "device" }], clients: [] }];
  d.anonymousGroup = "anon";
  writeFileSync(dynsec, JSON.stringify(d));
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    [`listener ${port} 127.0.0.1`, "allow_anonymous true", "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", `plugin_opt_config_file ${dynsec}`, "persistence false", "log_dest stderr", "log_type all", "user root", ""].join("\n"),
  );
  const log = join(dir, "mosquitto.log");
  const proc = Proc.start({ name: "mosquitto (ACL)", cmd: ["mosquitto", "-c", conf], logFile: log });
  await proc.waitUntil(() => portAnswers(port), "listener", 15_000);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    log,
    allow: async () => {
      const r = await run(["mosquitto_ctrl", "-h", "127.0.0.1", "-p", String(port), "-u", "admin", "-P", "s3cret", "dynsec", "removeRoleACL", "device", "subscribeLiteral", "containersupdate/desiredstate"]);
      expect(r.code).toBe(0);
    },
    stop: () => proc.stop(5000),
  };
}

describe("the broker refuses the subscription", () => {
  test("the agent says desired states will not be received, once, and connects again with backoff until the broker accepts it", async () => {
    const broker = await aclBroker();
    const backend = await mqtt.connectAsync(broker.url, { clientId: `acl-backend-${process.pid}` });
    try {
      await rig.agent!.stop(10_000);
      const from = rig.agent!.logSize();
      const agent = await rig.startAgent(["--mqtt", broker.url], {}, { connected: false });
      await agent.waitForLog("refused the subscription to containersupdate/desiredstate", 30_000, from);
      // Two retries (1 s, then 2 s later), seen by the broker: the same refusal is not said again.
      await until("the agent to connect three times", () => (readFileSync(broker.log, "utf8").match(/New client connected .* as fioup-agent-/g) ?? []).length, (n) => n >= 3, 20_000, 100);
      const said = agent.logSince(from);
      expect(said.match(/refused the subscription/g)).toHaveLength(1);
      expect(said).toContain(`Cannot use the broker ${broker.url}: it refused the subscription to containersupdate/desiredstate (Subscribe error: `);
      expect(said).toContain("desired states will not be received until it accepts it (check the broker's ACL for this client); reconnecting in 1000 ms");
      expect(said).not.toContain("connected to ");

      await broker.allow();
      const ends = new Promise<any>((resolve) =>
        backend.on("message", (_t, b) => {
          const m = b.length ? JSON.parse(b.toString()) : undefined;
          if (m?.activityId === "acl-1" && ["COMPLETED", "INCOMPLETE", "IDENTIFICATION_FAILED"].includes(m.payload?.status)) resolve(m.payload);
        }),
      );
      await backend.subscribeAsync("containersupdate/desiredstatefeedback", { qos: 1 });
      // Retained: the agent gets it once its subscription is accepted.
      await backend.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId: "acl-1", timestamp: Date.now(), payload: { domains: [{ id: "containers", components: [] }] } }), { qos: 1, retain: true });
      expect(await Promise.race([ends, Bun.sleep(45_000).then(() => "no end after 45 s")])).toMatchObject({ status: "COMPLETED" });
      expect(agent.logSince(from)).toContain("connected to ");
    } finally {
      await backend.endAsync(true).catch(() => {});
      await broker.stop();
    }
  }, 120_000);
});
