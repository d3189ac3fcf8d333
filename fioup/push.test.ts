import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceClient } from "./device-client.ts";
import { waitForNews } from "./push.ts";

/**
 * A gateway's /repo/wait as the device sees it: refused (`down` waits: "refused", or a proxy's
 * 502), then up, holding each wait for its `timeout` before a 204, as the real one does without
 * news. `asked` lists each request's hold, "-" when it was refused.
 */
function gateway(down: ("refused" | 502)[]) {
  const asked: string[] = [];
  const client = {
    async fetch(path: string, init: RequestInit = {}) {
      const hold = Number(new URL(path, "https://gw").searchParams.get("timeout"));
      const failure = down.shift();
      if (failure === "refused") {
        asked.push("-");
        throw Object.assign(new Error("Unable to connect"), { code: "ECONNREFUSED" });
      }
      if (failure === 502) {
        asked.push("-");
        return new Response("no backend", { status: 502 });
      }
      asked.push(String(hold));
      await Bun.sleep(hold * 1000);
      if (init.signal?.aborted) throw init.signal.reason;
      return new Response(null, { status: 204 });
    },
  } as unknown as DeviceClient;
  return { client, asked };
}

const dir = mkdtempSync(join(tmpdir(), "push-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let storages = 0;
/** A state dir of a device that trusts no timestamp yet. */
const storage = () => {
  const path = join(dir, String(++storages));
  mkdirSync(path);
  return path;
};
const never = new AbortController().signal;

describe("waitForNews after a check the network failed (untilBack)", () => {
  test("a gateway found away ends the wait as soon as it answers again: asked with a hold of 0", async () => {
    const g = gateway(["refused", 502]);
    const t0 = Date.now();
    expect(await waitForNews(g.client, storage(), 60_000, never, { untilBack: true })).toBe("back");
    // Two retry sleeps of 1 to 5 s, not the 60 s wait.
    expect({ asked: g.asked, soon: Date.now() - t0 < 11_000 }).toEqual({ asked: ["-", "-", "0"], soon: true });
  }, 20_000);

  test("a gateway that answers from the first request leaves the wait as it was (the backoff stands)", async () => {
    const g = gateway([]);
    expect(await waitForNews(g.client, storage(), 2500, never, { untilBack: true })).toBe("timeout");
    expect(g.asked).toEqual(["2"]);
  });

  test("without untilBack, a gateway found away and back is held as before", async () => {
    const g = gateway(["refused"]);
    const t0 = Date.now();
    expect(await waitForNews(g.client, storage(), 8000, never)).toBe("timeout");
    expect({ asked: g.asked[0], held: g.asked.slice(1).every((h) => Number(h) >= 1), waited: Date.now() - t0 >= 7900 }).toEqual({ asked: "-", held: true, waited: true });
  }, 20_000);
});

test("NTP setting the clock back during the wait does not stretch it by the step", async () => {
  const g = gateway([]);
  const realNow = Date.now;
  const asked = g.client.fetch.bind(g.client);
  // The clock steps 12 h back as the first held wait goes out.
  g.client.fetch = (async (...a: Parameters<typeof asked>) => {
    Date.now = () => realNow() - 12 * 3600_000;
    return await asked(...a);
  }) as typeof asked;
  try {
    const t0 = performance.now();
    const r = await Promise.race([waitForNews(g.client, storage(), 2500, never), Bun.sleep(6000).then(() => "still waiting 6 s on")]);
    expect({ r, asked: g.asked, within: performance.now() - t0 < 3500 }).toEqual({ r: "timeout", asked: ["2"], within: true });
  } finally {
    Date.now = realNow;
  }
}, 20_000);
