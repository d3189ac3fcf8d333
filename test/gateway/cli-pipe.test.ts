/**
 * A listing piped into a reader that is slow to start reading (`| less`, `| (sleep 1; wc -l)`, a
 * script busy elsewhere) arrives whole: the CLI exits once its output is taken, not when it is
 * queued. It used to stop at the pipe's 64 KiB, mid-line (mid-string in JSON), with exit 0.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { post } from "./_client.ts";

let g: GatewayHandle;
const TOKENS = 400;

beforeAll(async () => {
  g = await startGateway();
  for (let i = 0; i < TOKENS; i += 50) {
    const batch = Array.from({ length: Math.min(50, TOKENS - i) }, (_, j) => g.adminFetch("/admin/tokens", post({ tags: ["main"], name: `pipe-${i + j}-${"n".repeat(60)}` })));
    for (const r of await Promise.all(batch)) expect(r.status).toBeLessThan(300);
  }
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 60_000);

describe("gateway CLI output into a slow pipe", () => {
  test("tokens list --format json, read a second late, is whole and parses", async () => {
    const main = join(import.meta.dir, "..", "..", "gateway", "main.ts");
    const sh = Bun.spawn(["sh", "-c", `"$0" "$1" tokens list --data "$2" --format json | (sleep 1; cat)`, process.execPath, main, g.dataDir], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(sh.stdout).text(), new Response(sh.stderr).text(), sh.exited]);
    expect(code, err).toBe(0);
    expect(out.length).toBeGreaterThan(64 * 1024); // past what the pipe holds
    const listed = JSON.parse(out) as { tokens: { name: string | null }[] };
    expect(listed.tokens.filter((t) => t.name?.startsWith("pipe-"))).toHaveLength(TOKENS);
  }, 60_000);
});
