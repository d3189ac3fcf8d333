/**
 * Desired states the engine would have taken the wrong way, or failed half
 * way through an apply, are refused up front: `fioup agent` against the
 * private dockerd, mosquitto and a loopback registry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../harness/tmp.ts";
import { component, desiredState, helloImage, KantoRig } from "./_rig.ts";

let rig: KantoRig;
let hello: string;
const n = (x: string) => rig.name(x);

beforeAll(async () => {
  rig = await KantoRig.start("refuse");
  hello = await rig.push("library/hello-world", helloImage());
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

describe("fioup agent refuses input the engine would misread", () => {
  /** Publishes `body` retained, runs `check`, then clears the retained message (one per topic: the next test's would replace it). */
  async function retained(body: string, check: () => Promise<void>): Promise<void> {
    await rig.client.publishAsync("containersupdate/desiredstate", body, { qos: 1, retain: true });
    try {
      await check();
    } finally {
      await rig.client.publishAsync("containersupdate/desiredstate", "", { qos: 1, retain: true });
    }
  }

  /** Restarts the agent (the broker hands the retained message over again at its connect); the log's size before it. */
  async function restart(): Promise<number> {
    await rig.agent!.stop(5000);
    const from = rig.agent!.logSize();
    await rig.startAgent();
    return from;
  }

  const refusals = (pred: (activityId: string) => boolean) =>
    rig.msgs.filter((m) => m.topic === "containersupdate/desiredstatefeedback" && pred(m.activityId) && m.payload?.status === "IDENTIFICATION_FAILED");

  test("a retained desired state it refused is refused once: at the next start it is ignored, not refused again; a corrected one, under the same activityId too, is applied", async () => {
    const bad = desiredState("bad-retained", [component(n("ret"), hello, [{ key: "memory", value: "lots" }])]);
    await retained(JSON.stringify(bad), async () => {
      expect((await rig.final("bad-retained")).status).toBe("IDENTIFICATION_FAILED");
      const from = await restart();
      await rig.agent!.waitForLog(/ignored desired state bad-retained: /, 30_000, from);
      expect(refusals((id) => id === "bad-retained")).toHaveLength(1);
      // A new desired state is handled.
      expect(await rig.apply("after-refused", [component(n("after"), hello)])).toMatchObject({ status: "COMPLETED" });
    });
    // The back end corrects the message and publishes it again under the same activityId.
    const fixed = desiredState("bad-retained", [component(n("ret"), hello, [{ key: "memory", value: "64M" }])]);
    await retained(JSON.stringify(fixed), async () => {
      await rig.waitFor((m) => m.activityId === "bad-retained" && m.payload?.status === "COMPLETED");
      expect((await rig.containers()).get(n("ret"))?.state).toBe("running");
    });
  });

  test("a retained message that is not JSON, or older than the state applied, is refused once, not at every start", async () => {
    await retained("{not json", async () => {
      await rig.waitFor((m) => m.activityId?.startsWith("invalid-message-") && m.payload?.status === "IDENTIFICATION_FAILED");
      const from = await restart();
      await rig.agent!.waitForLog(/ignored desired state invalid-message-\d+: /, 30_000, from);
      expect(refusals((id) => id.startsWith("invalid-message-"))).toHaveLength(1);
    });
    const stale = desiredState("stale-retained", [component(n("stale"), hello)]);
    stale.timestamp -= 3_600_000; // older than "after-refused", applied above
    await retained(JSON.stringify(stale), async () => {
      expect(await rig.final("stale-retained")).toMatchObject({ status: "IDENTIFICATION_FAILED", message: expect.stringContaining("is older than that of the last desired state applied") });
      const from = await restart();
      await rig.agent!.waitForLog(/ignored desired state stale-retained: /, 30_000, from);
      expect(refusals((id) => id === "stale-retained")).toHaveLength(1);
    });
  });

  test("a retained desired state naming a system container is refused once: the check reads names, not the device, so at the next start it is ignored", async () => {
    const sys = desiredState("sys-retained", [component(n("sys"), hello)], [{ key: "systemContainers", value: n("sys") }]);
    await retained(JSON.stringify(sys), async () => {
      expect(await rig.final("sys-retained")).toMatchObject({ status: "IDENTIFICATION_FAILED", message: expect.stringContaining(`"${n("sys")}": it is a system container`) });
      const from = await restart();
      await rig.agent!.waitForLog(/ignored desired state sys-retained: /, 30_000, from);
      expect(refusals((id) => id === "sys-retained")).toHaveLength(1);
    });
  });

  test("a retained desired state refused for a system container of the agent's config is judged again once that config changes", async () => {
    const args = (names: string) => ["--system-containers", names];
    const restartWith = async (a: string[]) => {
      await rig.agent!.stop(5000);
      const from = rig.agent!.logSize();
      await rig.startAgent(a);
      return from;
    };
    await restartWith(args(n("cfgsys")));
    try {
      await retained(JSON.stringify(desiredState("cfgsys-retained", [component(n("cfgsys"), hello)])), async () => {
        expect(await rig.final("cfgsys-retained")).toMatchObject({ status: "IDENTIFICATION_FAILED", message: expect.stringContaining(`"${n("cfgsys")}": it is a system container`) });
        // The same config: ignored, not refused again.
        const from = await restartWith(args(n("cfgsys")));
        await rig.agent!.waitForLog(/ignored desired state cfgsys-retained: /, 30_000, from);
        expect(refusals((id) => id === "cfgsys-retained")).toHaveLength(1);
        // The name is no longer a system container: the same message is applied.
        await restartWith(args(n("other")));
        await rig.waitFor((m) => m.activityId === "cfgsys-retained" && m.payload?.status === "COMPLETED");
        expect((await rig.containers()).get(n("cfgsys"))?.state).toBe("running");
      });
    } finally {
      await restartWith([]);
    }
  });

  test("a retained desired state refused for the moment is taken at the next start: the agent was busy, or a container of that name was someone else's", async () => {
    // Busy: an activity waits for its commands when the retained one comes.
    await rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify(desiredState("busy-a", [component(n("busy"), hello)], [{ key: "commandFlow", value: "true" }])), { qos: 1 });
    await rig.waitFor((m) => m.activityId === "busy-a" && m.payload?.status === "IDENTIFIED");
    await retained(JSON.stringify(desiredState("busy-b", [component(n("busy"), hello)])), async () => {
      expect(await rig.final("busy-b")).toMatchObject({ status: "IDENTIFICATION_FAILED", message: expect.stringContaining("busy-a is in progress") });
      await restart(); // ends busy-a (it had changed nothing), then takes busy-b again
      expect(await rig.final("busy-a")).toMatchObject({ status: "INCOMPLETE" });
      await rig.waitFor((m) => m.activityId === "busy-b" && m.payload?.status === "COMPLETED");
      expect((await rig.containers()).get(n("busy"))?.state).toBe("running");
    });

    // A container of that name the agent does not own: refused until it goes.
    await rig.dockerd.docker("create", "--name", n("foreign"), hello);
    await retained(JSON.stringify(desiredState("clash", [component(n("foreign"), hello)])), async () => {
      expect(await rig.final("clash")).toMatchObject({ status: "IDENTIFICATION_FAILED", message: expect.stringContaining(`"${n("foreign")}": a container of that name belongs to`) });
      await rig.dockerd.docker("rm", "-f", n("foreign"));
      await restart();
      await rig.waitFor((m) => m.activityId === "clash" && m.payload?.status === "COMPLETED");
      expect(refusals((id) => id === "clash")).toHaveLength(1);
    });
  });

  test("a finished.json from an older agent, which kept refused activities' ids among the ended ones, does not hide a corrected message under such an id", async () => {
    await rig.agent!.stop(5000);
    const at = Date.now() - 60_000;
    // The old format: no version, no refused list; "old-refused" was refused, "old-applied" applied at `at`.
    writeFileSync(join(rig.dir, "var/sota/agent/finished.json"), JSON.stringify({ activityIds: ["old-applied", "old-refused"], timestamp: at, at: new Date(at).toISOString() }));
    await rig.startAgent();
    // A replay of the applied one (its own timestamp) is still ignored.
    const replay = { ...desiredState("old-applied", [component(n("replay"), hello)]), timestamp: at };
    await retained(JSON.stringify(replay), async () => {
      await rig.agent!.waitForLog(/ignored desired state old-applied: that activity already ended/, 30_000);
    });
    // The back end corrected the refused one and publishes it again under its id.
    expect(await rig.apply("old-refused", [component(n("corrected"), hello)])).toMatchObject({ status: "COMPLETED" });
    expect((await rig.containers()).get(n("corrected"))?.state).toBe("running");
    expect((await rig.containers()).has(n("replay"))).toBe(false);
  });

  test("a port whose host IP is not an address is refused, not published on every interface", async () => {
    const port = await freePort();
    const f = await rig.apply("bad-host-ip", [component(n("web"), hello, [{ key: "port", value: `999.999.999.999:${port}:80` }])]);
    expect(f.status).toBe("IDENTIFICATION_FAILED");
    expect(f.message).toContain(`host IP "999.999.999.999" is not an IPv4 address`);
    expect((await rig.containers()).has(n("web"))).toBe(false);

    // A loopback host IP written right is published on loopback only.
    const ok = await rig.apply("loopback-port", [component(n("web"), hello, [{ key: "port", value: `127.0.0.1:${port}:80` }])]);
    expect(ok.status).toBe("COMPLETED");
    expect((await rig.dockerd.docker("port", n("web"))).trim()).toBe(`80/tcp -> 127.0.0.1:${port}`);
  });
});
