/**
 * What counts as activated, and what a command after an activity's end does: `fioup agent`
 * against a real mosquitto, the private dockerd and a loopback registry. A new container that
 * crashes right after its start, crash-loops or turns unhealthy fails its activation and the old
 * one runs again; a one-shot that exits 0 is fine. A command for an activity that already ended
 * sends no feedback (its end stays its last word); one for an activity never seen is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { component, KantoRig, type Config } from "./_rig.ts";

let rig: KantoRig;
let web: string;
const n = (x: string) => rig.name(x);

beforeAll(async () => {
  rig = await KantoRig.start("act");
  web = await rig.push("kanto/act-web", { cmd: ["httpd", "-f", "-p", "8080"] });
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const actionOf = (f: any, name: string) => f.actions.find((x: any) => x.component.id === `containers:${name}`);

describe("activation watches the new containers settle", () => {
  const web1 = (version: string, config: Config = [], image = web) => [component(n("web1"), image, config, version)];

  /** Applies `version` of web1, expects ACTIVATION_FAILURE saying `why`, and the version-5 container running as before. */
  const failsAndRestores = async (activityId: string, version: string, config: Config, why: RegExp, image = web) => {
    const before = await rig.containers();
    expect(before.get(n("web1"))?.state).toBe("running");
    const f = await rig.apply(activityId, web1(version, config, image));
    expect(f.status).toBe("INCOMPLETE");
    expect(f.message).toContain("the previous containers were restored");
    const a = actionOf(f, n("web1"));
    expect(a.status).toBe("ACTIVATION_FAILURE");
    expect(a.message).toMatch(why);
    expect(await rig.finalCount(activityId)).toBe(1);
    expect(await rig.containers()).toEqual(before);
  };

  test("a container that exits 1 right after its start (restartPolicy no) fails its activation; the old one runs again, same ID", async () => {
    expect(await rig.apply("web-5", web1("5"))).toMatchObject({ status: "COMPLETED" });
    await failsAndRestores("web-6", "6", [{ key: "cmd", value: "false" }, { key: "restartPolicy", value: "no" }], /container ".*web1" exited with code 1/);
  });

  test("a container that crash-loops under the default restart policy fails its activation; the old one runs again", async () => {
    await failsAndRestores("web-7", "7", [{ key: "cmd", value: "false" }], /container ".*web1" (is restarting|keeps restarting|exited with code 1)/);
  });

  test("a container whose healthcheck fails fails its activation; one whose healthcheck passes is activated", async () => {
    // The engine keeps a container's healthcheck in the image it commits: images with one, no registry needed.
    const withCheck = async (cmd: string, tag: string) => {
      const ref = `${rig.registry.host}/kanto/act-health:${tag}`;
      const tmp = n(`mk-${tag}`);
      await rig.dockerd.docker("create", "--name", tmp, "--health-cmd", cmd, "--health-interval", "200ms", "--health-retries", "1", web);
      await rig.dockerd.docker("commit", tmp, ref);
      await rig.dockerd.docker("rm", tmp);
      return ref;
    };
    const [sick, fine] = await Promise.all([withCheck("false", "sick"), withCheck("true", "fine")]);
    await failsAndRestores("web-8", "8", [], /container ".*web1" is unhealthy/, sick);
    const f = await rig.apply("web-9", web1("9", [], fine));
    expect(f).toMatchObject({ status: "COMPLETED" });
    expect(actionOf(f, n("web1")).status).toBe("ACTIVATION_SUCCESS");
    expect((await rig.dockerd.docker("inspect", "-f", "{{.State.Health.Status}}", n("web1"))).trim()).toBe("healthy");
  });

  test("a one-shot that exits 0 (restartPolicy no) is activated", async () => {
    const f = await rig.apply("once-1", [component(n("once"), web, [{ key: "cmd", value: "true" }, { key: "restartPolicy", value: "no" }])]);
    expect(f.status).toBe("COMPLETED");
    expect(actionOf(f, n("once")).status).toBe("ACTIVATION_SUCCESS");
    expect((await rig.containers()).get(n("once"))?.state).toBe("exited");
  });
});

describe("commands after an activity's end", () => {
  const command = (activityId: string, cmd: string) =>
    rig.client.publishAsync("containersupdate/desiredstate/command", JSON.stringify({ activityId, payload: { command: cmd } }), { qos: 1 });

  test("a command for an activity that ended is ignored with a log line (its end stays its last feedback); one for an activity never seen is refused", async () => {
    const flow = [component(n("flow"), web, [{ key: "env", value: "V=1" }])];
    await rig.client.publishAsync(
      "containersupdate/desiredstate",
      JSON.stringify({ activityId: "e-1", timestamp: Date.now(), payload: { domains: [{ id: "containers", config: [{ key: "commandFlow", value: "true" }], components: flow }] } }),
      { qos: 1 },
    );
    await rig.waitFor((m) => m.activityId === "e-1" && m.payload?.status === "IDENTIFIED");
    const trail = (status: string) => rig.waitFor((m) => m.activityId === "e-1" && m.payload?.actions && actionOf(m.payload, n("flow"))?.status === status);
    await command("e-1", "DOWNLOAD");
    await trail("DOWNLOAD_SUCCESS");
    await command("e-1", "UPDATE");
    await trail("UPDATE_SUCCESS");
    await command("e-1", "ROLLBACK");
    expect(await rig.final("e-1")).toMatchObject({ status: "INCOMPLETE", message: expect.stringContaining("rolled back on command") });
    expect(await rig.finalCount("e-1")).toBe(1);
    const told = rig.feedbacks("e-1").length;

    // Commands run in arrival order: once the never-seen one is refused, the one before it was handled.
    await command("e-1", "ACTIVATE");
    await command("e-never", "ACTIVATE");
    const refused = await rig.final("e-never", 30_000);
    expect(refused).toMatchObject({ status: "IDENTIFICATION_FAILED", message: "Cannot run ACTIVATE: no activity e-never is waiting for commands" });
    expect(rig.feedbacks("e-1")).toHaveLength(told);
    expect(rig.feedbacks("e-1").at(-1)).toMatchObject({ status: "INCOMPLETE" });
    expect(rig.agent!.logTail(20_000)).toContain("ignored command ACTIVATE for activity e-1: that activity already ended");
    expect((await rig.containers()).has(n("flow"))).toBe(false);
  });
});
