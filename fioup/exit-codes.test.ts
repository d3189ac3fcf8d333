import { expect, test } from "bun:test";
import { RegistryUnreachableError } from "../lib/oci/registry-client.ts";
import { isNetworkFailure } from "./exit-codes.ts";
import { EngineError } from "./runtime/docker-engine.ts";

const withCode = (code: string) => Object.assign(new Error(`connect ${code}`), { code });

test("a failure is the network's when the gateway or registry could not be reached, or a connection to it was cut", () => {
  expect(isNetworkFailure(new RegistryUnreachableError("Cannot GET https://gw/v2/: connection refused"))).toBe(true);
  expect(isNetworkFailure(new Error("Cannot fetch blob", { cause: withCode("ECONNRESET") }))).toBe(true);
  expect(isNetworkFailure(new Error("no answer", { cause: Object.assign(new Error("timed out"), { name: "TimeoutError" }) }))).toBe(true);
  // Bun's code for a socket it could not open counts as the gateway CLI always counted it (exit 4).
  expect(isNetworkFailure(new Error("Cannot GET https://gw/", { cause: withCode("FailedToOpenSocket") }))).toBe(true);
});

test("the container engine's socket refused or reset is the device's trouble, not the link's: no quick retry", () => {
  const engineDown = new EngineError("Cannot reach the Docker Engine at /run/docker.sock", undefined, { cause: withCode("ECONNREFUSED") });
  expect(isNetworkFailure(engineDown)).toBe(false);
  expect(isNetworkFailure(new Error("install failed", { cause: engineDown }))).toBe(false);
  expect(isNetworkFailure(new Error("something else"))).toBe(false);
});
