/**
 * Desired states the engine would have taken the wrong way, or failed half
 * way through an apply, are refused up front: `fioup agent` against the
 * private dockerd, mosquitto and a loopback registry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
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
  test("a retained desired state it refused is refused once: at the next start it is ignored, not refused again", async () => {
    const bad = desiredState("bad-retained", [component(n("ret"), hello, [{ key: "memory", value: "lots" }])]);
    await rig.client.publishAsync("containersupdate/desiredstate", JSON.stringify(bad), { qos: 1, retain: true });
    try {
      expect((await rig.final("bad-retained")).status).toBe("IDENTIFICATION_FAILED");
      await rig.agent!.stop(5000);
      await rig.startAgent(); // the broker hands the retained message over again at connect
      await rig.agent!.waitForLog(/ignored desired state bad-retained: that activity already ended/, 30_000);
      expect(rig.feedbacks("bad-retained").filter((f) => f?.status === "IDENTIFICATION_FAILED")).toHaveLength(1);
    } finally {
      await rig.client.publishAsync("containersupdate/desiredstate", "", { qos: 1, retain: true }); // clears the retained message
    }
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
