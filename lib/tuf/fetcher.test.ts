import { afterAll, describe, expect, test } from "bun:test";
import { TufFetcher } from "./fetcher.ts";
import { MetadataFetchError } from "./verification-errors.ts";

// A server in the way of the gateway: a captive portal answers every URL with its login page.
const portal = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: () => new Response("<html><body>Please log in</body></html>", { headers: { "content-type": "text/html; charset=utf-8" } }),
});
afterAll(() => portal.stop(true));

describe("TufFetcher", () => {
  test("a web page where metadata should be is said as such, with its URL", async () => {
    const url = `${portal.url.origin}/repo/timestamp.json`;
    const err = await new TufFetcher({ maxBytes: 1 << 20 }).fetch(url).catch((e) => e);
    expect(err).toBeInstanceOf(MetadataFetchError);
    expect(err.message).toContain(`${url} answered a web page (text/html), not TUF metadata: is a proxy or captive portal in the way?`);
  });

  test("a server that does not answer is said in words, with the URL", async () => {
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const url = `${closed.url.origin}/repo/timestamp.json`;
    closed.stop(true);
    const err = await new TufFetcher({ maxBytes: 1 << 20 }).fetch(url).catch((e) => e);
    expect(err).toBeInstanceOf(MetadataFetchError);
    expect(err.message).toBe(`Cannot fetch TUF metadata timestamp.json: request to ${url} failed: connection refused (is it running at that address?)`);
  });
});
