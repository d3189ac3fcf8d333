/**
 * The connection cap an operator asked for is lowered to fit the process's open-file limit
 * (gateway/transport/connection-caps.ts); the gateway says so at start and in /metrics, so a
 * fleet that cannot connect is not a mystery. The limit is set with prlimit, as systemd's
 * LimitNOFILE= would.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";

const REPO = join(import.meta.dir, "..", "..");
const started: GatewayHandle[] = [];
afterAll(async () => {
  for (const g of started) await g.stop();
});

const metric = async (gw: GatewayHandle, name: string) => {
  const text = await (await gw.adminFetch("/metrics")).text();
  return Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1]);
};

test("under a low open-file limit the cap in force is logged and shown in /metrics; as asked otherwise", async () => {
  const low = await startGateway({ command: ["prlimit", "--nofile=2048:2048", "--", process.execPath, join(REPO, "gateway/main.ts")] });
  started.push(low);
  const max = await metric(low, "gateway_connections_max");
  expect(max).toBeGreaterThan(0);
  expect(max).toBeLessThan(2048);
  expect(readFileSync(low.logFile, "utf8")).toContain(`gateway: at most ${max} connections for want of open files (--max-connections is 50000): the open-file limit is 2048`);

  const asked = await startGateway({ args: ["--max-connections", "300"] });
  started.push(asked);
  expect(await metric(asked, "gateway_connections_max")).toBe(300);
  expect(readFileSync(asked.logFile, "utf8")).not.toContain("gateway: at most");
}, 60_000);
