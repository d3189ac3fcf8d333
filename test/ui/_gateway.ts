/** The gateway a test file's tests share. */
import { afterAll, beforeAll } from "bun:test";
import { startGateway, type GatewayHandle, type GatewayOptions } from "../harness/gateway.ts";

/**
 * A gateway for a test file's tests: started before them (a later beforeAll of the file sees it),
 * stopped after them. Read `g` once it is started.
 */
export function gatewayForTests(options?: GatewayOptions): { g: GatewayHandle } {
  const env = {} as { g: GatewayHandle };
  beforeAll(async () => {
    env.g = await startGateway(options);
  }, 120_000);
  afterAll(async () => {
    await env.g?.stop();
  }, 120_000);
  return env;
}
