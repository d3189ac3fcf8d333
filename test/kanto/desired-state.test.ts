/**
 * `fioup agent` against a real mosquitto, the private dockerd and a registry
 * on loopback: one agent process serves every test of this file, in order.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeOciLayout } from "../harness/images.ts";
import { freePort, run, tempDir } from "../harness/tmp.ts";
import { actionTrail, component, helloImage, KantoRig, squash } from "./_rig.ts";

let rig: KantoRig;
let hello: string;
let other: string;
const n = (x: string) => rig.name(x);

beforeAll(async () => {
  rig = await KantoRig.start("ds", { authRegistry: true });
  [hello, other] = await Promise.all([rig.push("library/hello-world", helloImage()), rig.push("kanto/other", helloImage("other"))]);
  await rig.startAgent();
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const exec = (name: string, ...cmd: string[]) => rig.dockerd.docker("exec", name, ...cmd);

describe("fioup agent applies desired states", () => {
  test("the hello-world desired state runs the container; FOO=BAR recreates it with the variable set", async () => {
    const f1 = await rig.apply("hello-1", [component(n("hello"), hello, [], "latest")]);
    expect(f1.status).toBe("COMPLETED");
    const all1 = rig.feedbacks("hello-1");
    expect(squash(all1.map((f) => f.status))).toEqual(["IDENTIFYING", "IDENTIFIED", "RUNNING", "COMPLETED"]);
    expect(await rig.finalCount("hello-1")).toBe(1);
    expect(actionTrail(all1, n("hello"))).toEqual(["IDENTIFIED", "DOWNLOADING", "DOWNLOAD_SUCCESS", "UPDATING", "UPDATE_SUCCESS", "ACTIVATING", "ACTIVATION_SUCCESS"]);
    // The image came over the network: progress reached 100 while downloading.
    const progress = all1.flatMap((f) => f.actions).filter((a: any) => a.status === "DOWNLOADING").map((a: any) => a.progress);
    expect(progress.length).toBeGreaterThan(0);
    expect(Math.max(...progress)).toBeLessThanOrEqual(100);
    const c1 = (await rig.containers()).get(n("hello"));
    expect(c1?.state).toBe("running");
    expect(c1?.image).toBe(hello);
    expect(await rig.dockerd.docker("logs", n("hello"))).toContain("Hello from fioup agent");

    const f2 = await rig.apply("hello-2", [component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }], "latest")]);
    expect(f2.status).toBe("COMPLETED");
    const all2 = rig.feedbacks("hello-2");
    expect(squash(all2.map((f) => f.status))).toEqual(["IDENTIFYING", "IDENTIFIED", "RUNNING", "COMPLETED"]);
    // Already local: no second pull, but the same trail (download is immediate).
    expect(actionTrail(all2, n("hello"))).toEqual(["IDENTIFIED", "DOWNLOADING", "DOWNLOAD_SUCCESS", "UPDATING", "UPDATE_SUCCESS", "ACTIVATING", "ACTIVATION_SUCCESS"]);
    const c2 = (await rig.containers()).get(n("hello"));
    expect(c2?.state).toBe("running");
    expect(c2?.id).not.toBe(c1?.id); // recreated
    expect(await exec(n("hello"), "env")).toContain("FOO=BAR");
    // The old container is gone, not left stopped.
    expect([...(await rig.containers()).keys()]).toEqual([n("hello")]);

    // The same desired state again changes nothing.
    const f3 = await rig.apply("hello-3", [component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }], "latest")]);
    expect(f3).toMatchObject({ status: "COMPLETED", actions: [] });
    expect((await rig.containers()).get(n("hello"))?.id).toBe(c2!.id);
  });

  test("an image from a registry that wants credentials is pulled with those of the agent's config", async () => {
    const reg = rig.authRegistry!;
    const dir = await tempDir("kanto-auth-img-");
    await writeOciLayout(dir, { ...helloImage("private"), tag: "private/app:1" });
    await run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "robot:s3cret", `oci:${dir}:1`, `docker://${reg.host}/private/app:1`]);
    const noCreds = await fetch(`${reg.url}/v2/private/app/manifests/1`);
    expect(noCreds.status).toBe(401);
    const f = await rig.apply("auth-1", [component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }], "latest"), component(n("private"), `${reg.host}/private/app:1`)]);
    expect(f.status).toBe("COMPLETED");
    expect(await rig.dockerd.docker("logs", n("private"))).toContain("private");
  });

  test("a restart policy change updates the container in place (same ID)", async () => {
    const before = (await rig.containers()).get(n("hello"))!;
    const f = await rig.apply("restart-1", [
      component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }, { key: "restartPolicy", value: "on-failure" }, { key: "restartMaxRetries", value: "3" }, { key: "memory", value: "64M" }], "latest"),
    ]);
    expect(f.status).toBe("COMPLETED");
    expect(actionTrail(rig.feedbacks("restart-1"), n("hello"))).toEqual(["IDENTIFIED", "UPDATING", "UPDATE_SUCCESS", "ACTIVATING", "ACTIVATION_SUCCESS"]);
    const after = (await rig.containers()).get(n("hello"))!;
    expect(after.id).toBe(before.id);
    expect(after.state).toBe("running");
    const policy = JSON.parse(await rig.dockerd.docker("inspect", "-f", "{{json .HostConfig.RestartPolicy}}", n("hello")));
    expect(policy).toEqual({ Name: "on-failure", MaximumRetryCount: 3 });
    expect((await rig.dockerd.docker("inspect", "-f", "{{.HostConfig.Memory}}", n("hello"))).trim()).toBe(String(64 << 20));
  });

  test("every component key maps onto the container", async () => {
    const port = await freePort(); // not one derived from the PID: that could be a port another test process holds
    const f = await rig.apply("keys-1", [
      component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }], "latest"),
      component(n("keys"), other, [
        { key: "env", value: "A=1" },
        { key: "env", value: "B=two words" },
        { key: "cmd", value: "sh" },
        { key: "cmd", value: "-c" },
        { key: "cmd", value: "echo started; exec httpd -f -p 80 -h /" },
        { key: "port", value: `127.0.0.1:${port}:80/tcp` },
        { key: "device", value: "/dev/null:/dev/mynull:rw" },
        { key: "mount", value: `${rig.dir}:/host:rprivate` },
        { key: "host", value: "backend:10.200.0.99" },
        { key: "privileged", value: "false" },
        { key: "restartPolicy", value: "always" },
        { key: "restartTimeout", value: "7" },
        { key: "logDriver", value: "json-file" },
        { key: "logMaxFiles", value: "3" },
        { key: "logMaxSize", value: "5M" },
        { key: "memory", value: "100M" },
        { key: "memorySwap", value: "200M" },
        { key: "memoryReservation", value: "50M" },
      ]),
    ]);
    expect(f.status).toBe("COMPLETED");
    const inspect = JSON.parse(await rig.dockerd.docker("inspect", n("keys")))[0];
    expect(inspect.Config.Env).toEqual(expect.arrayContaining(["A=1", "B=two words"]));
    expect(inspect.Config.Cmd).toEqual(["sh", "-c", "echo started; exec httpd -f -p 80 -h /"]);
    expect(inspect.Config.StopTimeout).toBe(7);
    const h = inspect.HostConfig;
    expect(h.PortBindings).toEqual({ "80/tcp": [{ HostIp: "127.0.0.1", HostPort: String(port) }] });
    expect(h.Devices).toEqual([{ PathOnHost: "/dev/null", PathInContainer: "/dev/mynull", CgroupPermissions: "rw" }]);
    expect(h.Mounts).toEqual([expect.objectContaining({ Type: "bind", Source: rig.dir, Target: "/host" })]);
    expect(h.ExtraHosts).toEqual(["backend:10.200.0.99"]);
    expect(h.Privileged).toBe(false);
    expect(h.RestartPolicy).toEqual({ Name: "always", MaximumRetryCount: 0 });
    expect(h.LogConfig).toEqual({ Type: "json-file", Config: { "max-file": "3", "max-size": "5m" } });
    expect([h.Memory, h.MemorySwap, h.MemoryReservation]).toEqual([100 << 20, 200 << 20, 50 << 20]);
    expect(h.NetworkMode).toBe("bridge");
    // Reachable on the published loopback port; the mount and device are there.
    const res = await fetch(`http://127.0.0.1:${port}/host/`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    expect(res?.status).toBeDefined();
    expect(await exec(n("keys"), "ls", "/host")).toContain("var");
    expect(await exec(n("keys"), "ls", "/dev/mynull")).toContain("/dev/mynull");
    expect(await exec(n("keys"), "cat", "/etc/hosts")).toContain("backend");
  });

  test("removing a component destroys its container but never a system container, a compose container or a foreign one", async () => {
    await rig.dockerd.docker("run", "-d", "--name", n("foreign"), hello);
    await rig.dockerd.docker("run", "-d", "--name", n("composed"), "--label", "com.docker.compose.project=someapp", hello);
    const f1 = await rig.apply("sys-1", [component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }], "latest"), component(n("extra"), other), component(n("sysb"), other)]);
    expect(f1.status).toBe("COMPLETED");
    const before = await rig.containers();
    expect(before.get(n("keys"))).toBeUndefined(); // not listed any more: destroyed
    // sysb was created by the agent; this message declares it a system container.
    const f2 = await rig.apply("sys-2", [component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }], "latest")], [{ key: "systemContainers", value: n("sysb") }]);
    expect(f2.status).toBe("COMPLETED");
    expect(actionTrail(rig.feedbacks("sys-2"), n("extra"))).toEqual(["IDENTIFIED", "REMOVING", "REMOVAL_SUCCESS"]);
    expect(f2.actions.map((a: any) => a.component.id)).toEqual([`containers:${n("extra")}`]);
    const after = await rig.containers();
    expect(after.has(n("extra"))).toBe(false);
    for (const keep of ["sysb", "foreign", "composed", "hello"]) {
      expect(after.get(n(keep))?.id).toBe(before.get(n(keep))!.id);
      expect(after.get(n(keep))?.state).toBe("running");
    }
    // A desired state naming a container of a compose app is refused, nothing changes.
    const f3 = await rig.apply("sys-3", [component(n("composed"), hello)]);
    expect(f3.status).toBe("IDENTIFICATION_FAILED");
    expect(f3.message).toContain("compose app");
    expect(await rig.containers()).toEqual(after);
    await rig.dockerd.docker("rm", "-f", n("foreign"), n("composed"));
  });

  test("an image that cannot be pulled ends INCOMPLETE and the previous containers still run", async () => {
    const before = await rig.containers();
    const f = await rig.apply("pull-fail", [
      component(n("hello"), hello, [{ key: "env", value: "FOO=BAZ" }], "latest"),
      component(n("missing"), `${rig.registry.host}/kanto/not-there:1`),
    ]);
    expect(f.status).toBe("INCOMPLETE");
    expect(await rig.finalCount("pull-fail")).toBe(1);
    expect(f.message).toContain("not-there");
    const failed = f.actions.find((a: any) => a.component.id === `containers:${n("missing")}`);
    expect(failed.status).toBe("DOWNLOAD_FAILURE");
    expect(failed.message).toContain("Cannot pull image");
    const after = await rig.containers();
    expect(after).toEqual(before);
    expect(await exec(n("hello"), "env")).toContain("FOO=BAR");
  });

  test("a container that fails to start is rolled back: the previous one runs again, same ID", async () => {
    const before = await rig.containers();
    const f = await rig.apply("activate-fail", [
      component(n("hello"), hello, [{ key: "env", value: "FOO=BAR" }, { key: "cmd", value: "/no/such/binary" }], "latest"),
      component(n("sysb"), other),
    ], [{ key: "systemContainers", value: "" }]);
    expect(f.status).toBe("INCOMPLETE");
    const a = f.actions.find((x: any) => x.component.id === `containers:${n("hello")}`);
    expect(a.status).toBe("ACTIVATION_FAILURE");
    expect(f.message).toContain("previous containers were restored");
    expect(await rig.finalCount("activate-fail")).toBe(1);
    const after = await rig.containers();
    expect(after).toEqual(before);
    expect(after.get(n("hello"))?.state).toBe("running");
  });

  test("the current state on request matches docker ps", async () => {
    await rig.client.publishAsync("containersupdate/currentstate/get", JSON.stringify({ activityId: "cs-1", timestamp: Date.now(), payload: {} }), { qos: 1 });
    const m = await rig.waitFor((x) => x.topic === "containersupdate/currentstate" && x.activityId === "cs-1");
    const nodes = m.payload.softwareNodes.filter((x: any) => x.type === "CONTAINER");
    const ps = await rig.containers();
    const fromState = new Map(nodes.map((x: any) => [x.id.replace(/^containers:/, ""), Object.fromEntries(x.parameters.map((p: any) => [p.key, p.value]))]));
    expect([...fromState.keys()].sort()).toEqual([...ps.keys()].sort());
    for (const [name, c] of ps) {
      expect(fromState.get(name)).toMatchObject({ image: c.image, status: c.state, "container.id": c.id });
    }
    expect(m.payload.associations.length).toBe(nodes.length);
  });

  test("malformed desired states answer IDENTIFICATION_FAILED with the reason and change nothing", async () => {
    const before = await rig.containers();
    const good = component(n("hello"), hello, [{ key: "env", value: "FOO=CHANGED" }]);
    const cases: [string, string | Uint8Array, string][] = [
      ["not JSON", "{not json", "not JSON"],
      ["wrong type", JSON.stringify({ activityId: "bad-type", payload: { domains: [{ id: "containers", components: [{ id: n("hello"), version: 1, config: [] }] }] } }), "payload.domains[0].components[0].version"],
      ["unknown key", JSON.stringify({ activityId: "bad-key", payload: { domains: [{ id: "containers", components: [{ ...good, config: [...good.config, { key: "colour", value: "blue" }] }] }] } }), "unknown key"],
      ["bad port", JSON.stringify({ activityId: "bad-port", payload: { domains: [{ id: "containers", components: [{ ...good, config: [...good.config, { key: "port", value: "80:99999" }] }] }] } }), "container port"],
      ["10 MB", JSON.stringify({ activityId: "huge", payload: { domains: [], pad: "x".repeat(10 << 20) } }), "more than"],
    ];
    for (const [what, body, reason] of cases) {
      const since = rig.msgs.length;
      await rig.client.publishAsync("containersupdate/desiredstate", typeof body === "string" ? body : Buffer.from(body), { qos: 1 });
      const m = await rig.waitFor((x) => x.topic === "containersupdate/desiredstatefeedback" && x.payload?.status === "IDENTIFICATION_FAILED", 30_000, since);
      expect(m.payload.message, what).toContain(reason);
      expect(m.payload.actions).toEqual([]);
    }
    expect(await rig.containers()).toEqual(before);
  });

  test("a second desired state while one runs is refused; the command flow waits for DOWNLOAD, UPDATE, ACTIVATE and CLEANUP", async () => {
    const flow = [component(n("hello"), hello, [{ key: "env", value: "FOO=FLOW" }], "latest")];
    await rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify({ activityId: "flow-1", payload: { domains: [{ id: "containers", config: [{ key: "commandFlow", value: "true" }], components: flow }] } }), { qos: 1 });
    await rig.waitFor((m) => m.activityId === "flow-1" && m.payload?.status === "IDENTIFIED");
    const other2 = await rig.apply("flow-2", flow);
    expect(other2.status).toBe("IDENTIFICATION_FAILED");
    expect(other2.message).toContain("flow-1 is in progress");
    const before = (await rig.containers()).get(n("hello"))?.id;
    const cmd = async (command: string, wantAction: string) => {
      await rig.client.publishAsync("containersupdate/desiredstate/command", JSON.stringify({ activityId: "flow-1", payload: { command } }), { qos: 1 });
      await rig.waitFor((m) => m.activityId === "flow-1" && m.payload?.actions?.find((a: any) => a.component.id === `containers:${n("hello")}`)?.status === wantAction);
    };
    await cmd("DOWNLOAD", "DOWNLOAD_SUCCESS");
    expect((await rig.containers()).get(n("hello"))?.id).toBe(before); // download changes no container
    await cmd("UPDATE", "UPDATE_SUCCESS");
    await cmd("ACTIVATE", "ACTIVATION_SUCCESS");
    await rig.client.publishAsync("containersupdate/desiredstate/command", JSON.stringify({ activityId: "flow-1", payload: { command: "CLEANUP" } }), { qos: 1 });
    expect((await rig.final("flow-1")).status).toBe("COMPLETED");
    expect(await exec(n("hello"), "env")).toContain("FOO=FLOW");
    expect([...(await rig.containers()).keys()].filter((k) => k.includes("fioup-old"))).toEqual([]);
  });
});
