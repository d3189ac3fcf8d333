import { expect, test } from "bun:test";
import { urlTarget } from "./url.ts";

test("urlTarget cuts a request URL into its path (as sent) and query", () => {
  expect(urlTarget("https://gw:8443/repo/wait?after=3&timeout=30")).toEqual({ path: "/repo/wait", query: "after=3&timeout=30" });
  expect(urlTarget("http://[::1]:80/events")).toEqual({ path: "/events", query: "" });
  expect(urlTarget("http://gw/a%2Fb?")).toEqual({ path: "/a%2Fb", query: "" });
  expect(urlTarget("http://gw")).toEqual({ path: "/", query: "" });
  // A target alone (a request without a Host header, as a proxy's HTTP/1.0 health check sends it).
  expect(urlTarget("/healthz")).toEqual({ path: "/healthz", query: "" });
  expect(urlTarget("/repo/wait?after=3")).toEqual({ path: "/repo/wait", query: "after=3" });
});
