/**
 * What the daemon sends besides updates reaches the gateway even when the gateway cannot take
 * it at first: system info that failed at the daemon's start (the gateway unreachable, or a 503
 * while its database stalls) is sent again after the next cycle, not only at the next start.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { until } from "../harness/tmp.ts";
import { asTestGateway, Device, startDockerd, type DockerdHandle } from "./_setup.ts";

let dockerd: DockerdHandle;
let handle: GatewayHandle | undefined;
let device: Device;

beforeAll(async () => {
  [dockerd, handle] = await Promise.all([startDockerd(), startGateway({ args: ["--polling-seconds", "1"] })]);
  device = await Device.create(dockerd);
}, 120_000);

afterAll(async () => {
  await handle?.stop();
  await dockerd?.stop();
});

/** Reads `stream` in the background; `seen(text)` resolves once the output so far contains it (throws, quoting it, past `ms`). */
function watchOutput(stream: ReadableStream<Uint8Array>) {
  let out = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of stream) out += decoder.decode(chunk, { stream: true });
  })();
  return {
    text: () => out,
    seen: (text: string, ms: number) => until(`"${text}" in the output`, () => out, (o) => o.includes(text), ms, 50),
    reading,
  };
}

test("system info the gateway did not take at the daemon's start is sent again at a later cycle", async () => {
  const gw = asTestGateway(handle!);
  const uuid = await device.register(gw);
  const { dataDir } = handle!;
  await handle!.stop();
  handle = undefined;
  const daemon = device.spawn(["daemon"]);
  const log = watchOutput(daemon.stderr as ReadableStream<Uint8Array>);
  try {
    await log.seen("cannot send system info", 20_000);
    // The gateway is back (same data, same port): nothing restarts the daemon.
    const back = await startGateway({ dataDir, args: ["--polling-seconds", "1"] });
    handle = back;
    const systemInfo = async () => ((await (await back.adminFetch(`/admin/devices/${uuid}`)).json()) as { systemInfo: Record<string, unknown> }).systemInfo;
    const info = await until("the device's system info at the gateway (3 parts)", systemInfo, (i) => Object.keys(i).length >= 3, 15_000, 200);
    expect(Object.keys(info).sort(), log.text()).toEqual(["config", "hardware", "network"]);
    expect((info.hardware as { fioup?: string }).fioup).toBeString();
  } finally {
    daemon.kill("SIGTERM");
  }
  expect(await Promise.race([daemon.exited, Bun.sleep(30_000).then(() => "timeout")])).toBe(0);
}, 90_000);
