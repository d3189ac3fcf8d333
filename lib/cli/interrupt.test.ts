import { describe, expect, test } from "bun:test";
import { join } from "node:path";

/** A process that waits on abortOnStopSignals(reason, again), saying on stdout when it is aborted and when it ends. */
function waiter(again: "ignored" | "ends") {
  const code = `
    import { abortOnStopSignals } from ${JSON.stringify(join(import.meta.dir, "interrupt.ts"))};
    const stop = abortOnStopSignals("stopped", ${JSON.stringify(again)});
    stop.signal.addEventListener("abort", () => console.log("aborted " + stop.signal.reason.message + " by " + stop.received));
    console.log("ready");
    await new Promise((r) => setTimeout(r, 1500));
    stop.release();
    console.log("released");
  `;
  const proc = Bun.spawn([process.execPath, "-e", code], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  let buf = "";
  const until = async (text: string) => {
    while (!buf.includes(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += new TextDecoder().decode(value);
    }
    return buf;
  };
  return { proc, until };
}

/** A waiter sent `first` once it is ready, checked to be aborted by it. */
async function signalled(again: "ignored" | "ends", first: NodeJS.Signals) {
  const w = waiter(again);
  await w.until("ready");
  w.proc.kill(first);
  expect(await w.until("aborted")).toContain(`aborted stopped by ${first}`);
  return w;
}

describe("abortOnStopSignals", () => {
  test("the first signal aborts with the reason; with 'ignored' a second one changes nothing", async () => {
    const w = await signalled("ignored", "SIGINT");
    w.proc.kill("SIGTERM");
    expect(await w.until("released")).toContain("released");
    expect(await w.proc.exited).toBe(0);
  });

  test("with 'ends' the same signal again takes its default action", async () => {
    const w = await signalled("ends", "SIGTERM");
    w.proc.kill("SIGTERM");
    await w.proc.exited;
    expect(w.proc.signalCode).toBe("SIGTERM");
  });
});
