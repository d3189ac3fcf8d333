/**
 * What the daemon sends besides updates reaches the gateway even when the gateway cannot take
 * it at first: system info that failed at the daemon's start (the gateway unreachable, or a 503
 * while its database stalls) is sent again after the next cycle, not only at the next start.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
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

/** Reads `stream` in the background; `seen(text)` resolves once the output so far contains it. */
function watchOutput(stream: ReadableStream<Uint8Array>) {
  let out = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of stream) out += decoder.decode(chunk, { stream: true });
  })();
  return {
    text: () => out,
    async seen(text: string, ms: number): Promise<boolean> {
      for (const until = Date.now() + ms; Date.now() < until; await Bun.sleep(50)) if (out.includes(text)) return true;
      return out.includes(text);
    },
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
    expect(await log.seen("cannot send system info", 20_000), log.text()).toBe(true);
    // The gateway is back (same data, same port): nothing restarts the daemon.
    handle = await startGateway({ dataDir, args: ["--polling-seconds", "1"] });
    let info: Record<string, unknown> = {};
    for (const until = Date.now() + 15_000; Date.now() < until && Object.keys(info).length < 3; await Bun.sleep(200)) {
      info = ((await (await handle.adminFetch(`/admin/devices/${uuid}`)).json()) as { systemInfo: Record<string, unknown> }).systemInfo;
    }
    expect(Object.keys(info).sort(), log.text()).toEqual(["config", "hardware", "network"]);
    expect((info.hardware as { fioup?: string }).fioup).toBeString();
  } finally {
    daemon.kill("SIGTERM");
  }
  expect(await Promise.race([daemon.exited, Bun.sleep(30_000).then(() => "timeout")])).toBe(0);
}, 90_000);
