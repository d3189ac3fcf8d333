import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { testGateway } from "../test/gateway/_fixture.ts";
import { createAdmission } from "./admission.ts";
import type { PeerIdentity } from "./env.ts";

let t: Awaited<ReturnType<typeof testGateway>>;
let admit: ReturnType<typeof createAdmission>;
let device: PeerIdentity;

beforeAll(async () => {
  t = await testGateway();
  device = (await t.register()).peer;
  admit = createAdmission({ devices: t.gw.devices, tokenValid: (auth) => auth === "Bearer good" });
});
afterAll(async () => {
  await t?.close();
});

const head = (method: string, path: string, headers: Record<string, string> = {}) => ({
  method,
  path,
  header: (name: string) => headers[name.toLowerCase()],
});

describe("admission", () => {
  test("device endpoints without the certificate of a device in good standing are refused before their body", async () => {
    expect(await admit(head("POST", "/events"), {})).toEqual({ authenticated: false, refuse: true });
    expect(await admit(head("GET", "/repo/timestamp.json"), {})).toMatchObject({ refuse: true });
    expect(await admit(head("POST", "/events"), { peer: { cn: device.cn, serial: "00" } })).toEqual({ authenticated: false, refuse: true });
    expect(await admit(head("POST", "/events"), { peer: device })).toEqual({ authenticated: true, refuse: false });
  });

  test("/admin and registration need an Authorization header; /v2 a header or a device certificate", async () => {
    expect(await admit(head("POST", "/admin/targets"), {})).toMatchObject({ refuse: true });
    expect(await admit(head("POST", "/admin/targets", { authorization: "Bearer nope" }), {})).toEqual({ authenticated: false, refuse: false });
    expect(await admit(head("POST", "/devices"), {})).toMatchObject({ refuse: true });
    expect(await admit(head("PATCH", "/v2/main/app/blobs/uploads/x"), {})).toMatchObject({ refuse: true });
    expect(await admit(head("GET", "/v2/main/app/manifests/1"), { peer: device })).toEqual({ authenticated: true, refuse: false });
    expect(await admit(head("PATCH", "/v2/main/app/blobs/uploads/x", { authorization: "Bearer good" }), {})).toEqual({ authenticated: true, refuse: false });
  });

  test("public endpoints are never refused, and do not authenticate", async () => {
    for (const path of ["/healthz", "/metrics", "/ca.pem", "/openapi.json", "/token", "/administrator"]) {
      expect(await admit(head("GET", path), {})).toEqual({ authenticated: false, refuse: false });
    }
  });
});
