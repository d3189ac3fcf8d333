import { describe, expect, test } from "bun:test";
import { formatReference, isRegistryHost, parseReference, referenceTarget, tryParseReference } from "./reference.ts";

const D = `sha256:${"b".repeat(64)}`;

describe("parseReference", () => {
  test("applies Docker Hub defaults to a bare name", () => {
    expect(parseReference("nginx")).toEqual({ registry: "docker.io", repository: "library/nginx", tag: "latest" });
    expect(parseReference("nginx:alpine")).toEqual({ registry: "docker.io", repository: "library/nginx", tag: "alpine" });
    expect(parseReference("foo/bar")).toEqual({ registry: "docker.io", repository: "foo/bar", tag: "latest" });
    expect(parseReference("index.docker.io/library/nginx:1").registry).toBe("docker.io");
  });
  test("recognizes host:port, dotted hosts and localhost as registries", () => {
    expect(parseReference("127.0.0.1:5000/main/app:v1")).toEqual({ registry: "127.0.0.1:5000", repository: "main/app", tag: "v1" });
    expect(parseReference("ghcr.io/o/r")).toEqual({ registry: "ghcr.io", repository: "o/r", tag: "latest" });
    expect(parseReference("localhost/x").registry).toBe("localhost");
    expect(parseReference("[::1]:5000/x:1").registry).toBe("[::1]:5000");
  });
  test("keeps tag and digest together, and a digest alone has no tag", () => {
    expect(parseReference(`reg.example:443/a/b:v2@${D}`)).toEqual({ registry: "reg.example:443", repository: "a/b", tag: "v2", digest: D });
    expect(parseReference(`reg.example/a@${D}`)).toEqual({ registry: "reg.example", repository: "a", digest: D });
    expect(referenceTarget(parseReference(`reg.example/a:v1@${D}`))).toBe(D);
  });
  test("rejects malformed references with a SyntaxError", () => {
    for (const bad of ["", "UPPER", "a/B", "a:", "a@sha256:abc", "a//b", "-a", "a:tag with space", `x/${"a".repeat(300)}`, "reg.example/"]) {
      expect(() => parseReference(bad)).toThrow(SyntaxError);
      expect(tryParseReference(bad)).toBeUndefined();
    }
  });
  test("formatReference round-trips", () => {
    for (const s of ["127.0.0.1:5000/main/app:v1", `ghcr.io/o/r@${D}`, `h.io/a/b:t@${D}`]) {
      expect(formatReference(parseReference(s))).toBe(s);
    }
    expect(formatReference(parseReference("nginx"))).toBe("docker.io/library/nginx:latest");
  });
  test("isRegistryHost takes a registry as references name it, nothing else", () => {
    for (const ok of ["127.0.0.1:5000", "localhost:5000", "registry.example.com", "[::1]:5000"]) expect({ ok, is: isRegistryHost(ok) }).toEqual({ ok, is: true });
    for (const bad of ["http://127.0.0.1:5000", "127.0.0.1:5000/", "registry", "", "reg.example/path"]) expect({ bad, is: isRegistryHost(bad) }).toEqual({ bad, is: false });
  });
});
