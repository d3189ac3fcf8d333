/**
 * `fioup agent` rolling back a second time: two failed desired states in a
 * row, and an agent killed in the middle of the rollback that recovers from
 * an earlier kill, whose next start rolls the same activity back again. The
 * user checks that the previous container runs at the end, unchanged and not
 * restarted by the second rollback, and that the feedback says it was restored.
 *
 * The first agent is killed (SIGKILL from the test) once the engine has begun
 * its stop of the old container (docker events shows the SIGTERM); the second
 * kills itself right after its rollback restored that container
 * (FIOUP_FAULT=agent:restored, see fioup/fault.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { until } from "../harness/tmp.ts";
import { component, KantoRig, helloImage } from "./_rig.ts";

let rig: KantoRig;
let fast: string;
let slow: string;
/**
 * The slow container's stop timeout: busybox sleep as PID 1 ignores SIGTERM, so each stop lasts this
 * long. The "over" case waits it out before the restart. The "still under way" case gives the stop
 * a minute instead, so it surely outlasts the restarted agent's start however loaded the machine,
 * and ends it with `docker kill` (as the timeout would) once that agent has asked for the stop too,
 * or has exited without asking.
 */
const STOP_S = 5;
const UNDER_WAY_STOP_S = 60;
const n = (x: string) => rig.name(x);

beforeAll(async () => {
  rig = await KantoRig.start("rb2");
  [fast, slow] = await Promise.all([
    rig.push("kanto/rb2-fast", helloImage("fast stop")),
    rig.push("kanto/rb2-slow", { ...helloImage("slow stop"), stopSignal: "SIGTERM" }),
  ]);
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const publish = (activityId: string, components: unknown[]) =>
  rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId, payload: { domains: [{ id: "containers", components }] } }), { qos: 1 });

const inspect = (name: string, format: string) => rig.dockerd.docker("inspect", "-f", format, name).then((s) => s.trim());

/** V of a container's environment. */
const versionOf = async (name: string) => (JSON.parse(await inspect(name, "{{json .Config.Env}}")) as string[]).find((e) => e.startsWith("V="))?.slice(2);

/**
 * Waits until the engine has sent the container its stop signal (a `kill` event with SIGTERM since
 * `since`, in seconds): true, or false once `gaveUp()` says to stop looking.
 */
async function stopBegun(id: string, since: string, gaveUp = () => false): Promise<boolean> {
  const termSent = async () => {
    const to = (Date.now() / 1000 + 1).toFixed(3);
    const signals = await rig.dockerd.docker("events", "--since", since, "--until", to, "--filter", `container=${id}`, "--filter", "event=kill", "--format", "{{.Actor.Attributes.signal}}");
    return signals.split("\n").includes("15");
  };
  return await until(`the engine to begin stopping ${id} (SIGTERM in docker events)`, termSent, (sent) => sent || gaveUp(), 60_000, 100).catch((err: Error) => {
    throw new Error(`${err.message}; agent log:\n${rig.agent?.logTail(3000)}`);
  });
}

describe("fioup agent rolls back a second time", () => {
  test("two failed desired states in a row: each is rolled back and the first container runs on, same ID, same settings", async () => {
    expect(await rig.apply("seq-base", [component(n("web"), fast, [{ key: "env", value: "V=1" }], "1")])).toMatchObject({ status: "COMPLETED" });
    const before = await rig.containers();
    expect(before.get(n("web"))?.state).toBe("running");
    for (const v of ["2", "3"]) {
      const f = await rig.apply(`seq-${v}`, [component(n("web"), fast, [{ key: "env", value: `V=${v}` }, { key: "cmd", value: "/no/such/binary" }], v)]);
      expect(f.status).toBe("INCOMPLETE");
      expect(f.message).toContain("the previous containers were restored");
      expect(f.actions).toEqual([expect.objectContaining({ component: { id: `containers:${n("web")}`, version: v }, status: "ACTIVATION_FAILURE" })]);
      expect(await rig.containers()).toEqual(before);
      expect(await versionOf(n("web"))).toBe("1");
    }
    await rig.dockerd.docker("rm", "-f", n("web"));
  }, 120_000);

  for (const when of ["still under way", "over"] as const) {
    test(`killed while the old container stops, restarted once the stop is ${when}, killed again right after the rollback restored it: the next start rolls back again and leaves it running, not restarted`, async () => {
      const svc = n(`svc-${when === "over" ? "o" : "u"}`);
      try {
        await killTwice(svc, when);
      } finally {
        await rig.dockerd.docker("rm", "-f", svc).catch(() => {});
      }
    }, 120_000);
  }
});

/** One case: the agent applying V=b over V=a is killed while the engine stops `svc`, its successor right after restoring it; a third recovers. */
async function killTwice(svc: string, when: "still under way" | "over"): Promise<void> {
  const state = (v: string) => [component(svc, slow, [{ key: "env", value: `V=${v}` }, { key: "restartTimeout", value: String(when === "over" ? STOP_S : UNDER_WAY_STOP_S) }], v)];
  expect(await rig.apply(`base-${when}`, state("a"))).toMatchObject({ status: "COMPLETED" });
  const id = (await rig.containers()).get(svc)!.id;
  const activity = `kill-${when.replace(/ /g, "-")}`;
  const since = (Date.now() / 1000 - 0.5).toFixed(3);
  await publish(activity, state("b"));
  await stopBegun(id, since);
  process.kill(rig.agent!.pid, "SIGKILL");
  await rig.agent!.exitedPromise;
  const afterKill = (Date.now() / 1000).toFixed(3);
  if (when === "over") {
    await until(`${svc} to stop within ${STOP_S + 10} s of its stop beginning`, () => inspect(svc, "{{.State.Running}}"), (running) => running !== "true", (STOP_S + 10) * 1000, 100);
  }

  const report = join(rig.dir, "fault-rb2.jsonl");
  rmSync(report, { force: true });
  const second = await rig.startAgent([], { FIOUP_FAULT: "agent:restored", FIOUP_FAULT_REPORT: report }, { connected: false });
  if (when === "still under way") {
    // The stop ends (SIGKILL, as at its timeout) once the recovering agent has asked for it too (a
    // second SIGTERM), or has exited without asking: then it ends the container the rollback left running.
    let exited = false;
    void second.exitedPromise.then(() => (exited = true));
    await stopBegun(id, afterKill, () => exited);
    await rig.dockerd.docker("kill", svc).catch(() => {});
  }
  const died = await Promise.race([second.exitedPromise.then(() => true), Bun.sleep(60_000).then(() => false)]);
  if (!died || !existsSync(report)) throw new Error(`The recovering agent never reached agent:restored; its log:\n${second.logTail(3000)}`);
  expect(readFileSync(report, "utf8")).toContain(`"name":"${svc}"`);
  // The case is the one named: the recovering agent found the killed agent's stop still under way and waited for it.
  if (when === "still under way") expect(second.logTail(20_000)).toContain("waited for the stop it had been asked for");
  const restoredAt = await inspect(svc, "{{.State.StartedAt}}");
  expect(await inspect(svc, "{{.State.Running}}")).toBe("true");

  await rig.startAgent();
  const final = await rig.final(activity);
  expect(final.status).toBe("INCOMPLETE");
  expect(final.message).toBe("the agent restarted in the middle of the apply; the previous containers were restored");
  expect(final.actions).toEqual([expect.objectContaining({ component: { id: `containers:${svc}`, version: "b" }, message: "rolled back" })]);
  // The killed agent's stop is over in both cases (waited out, or ended by the kill above).
  const ps = await rig.containers();
  expect([...ps.keys()]).toEqual([svc]); // the old one under its own name, no new one, nothing set aside
  expect(ps.get(svc)).toMatchObject({ id, state: "running" });
  expect(await versionOf(svc)).toBe("a");
  // The second rollback left the restored container alone: a stop and start would have moved StartedAt.
  expect(await inspect(svc, "{{.State.StartedAt}}")).toBe(restoredAt);
}
