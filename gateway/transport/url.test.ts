import { expect, test } from "bun:test";
import { requestTarget, urlTarget } from "./url.ts";

test("urlTarget cuts a request URL into its path (as sent) and query", () => {
  expect(urlTarget("https://gw:8443/repo/wait?after=3&timeout=30")).toEqual({ path: "/repo/wait", query: "after=3&timeout=30" });
  expect(urlTarget("http://[::1]:80/events")).toEqual({ path: "/events", query: "" });
  expect(urlTarget("http://gw/a%2Fb?")).toEqual({ path: "/a%2Fb", query: "" });
  expect(urlTarget("http://gw")).toEqual({ path: "/", query: "" });
  // A target alone (a request without a Host header, as a proxy's HTTP/1.0 health check sends it).
  expect(urlTarget("/healthz")).toEqual({ path: "/healthz", query: "" });
  expect(urlTarget("/repo/wait?after=3")).toEqual({ path: "/repo/wait", query: "after=3" });
});

test("requestTarget refuses a target the URL parser would move, and decodes escaped unreserved characters", () => {
  const same = "/v2/factory/app/manifests/sha256:0a?n=1&x=%2e%2e";
  expect(requestTarget(same)).toBe(same); // the query is not the path's business
  expect(requestTarget("/v2/a%2Fb/c%20d")).toBe("/v2/a%2Fb/c%20d"); // reserved and others stay escaped
  expect(requestTarget("/%61dmin/%7Euser.x%2E?q=%61")).toBe("/admin/~user.x.?q=%61");
  expect(requestTarget("https://gw:8443/rep%6F/wait?a=1")).toBe("https://gw:8443/repo/wait?a=1");
  expect(requestTarget("/a/.hidden/..x/...")).toBe("/a/.hidden/..x/...");
  for (const refused of [
    "/repo/../ca.pem",
    "/repo/./ca.pem",
    "/repo/..",
    "/repo/..?x",
    "/repo/%2e%2e/ca.pem",
    "/repo/%2E./ca.pem",
    "/repo/.%2e",
    "/repo/%2e",
    "http://gw/a/../admin",
    "/repo\\ca.pem",
    "/ad\tmin",
    "/admin#x",
    "/a?b#c",
    "/caf\u00e9",
    "/a%2",
    "/a%zz",
  ])
    expect(requestTarget(refused), refused).toBeUndefined();
});
