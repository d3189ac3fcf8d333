import { describe, expect, test } from "bun:test";
import { parseSize } from "../../lib/cli/size.ts";
import { componentSpec, InvalidComponentError, parsePort, recreateKey, updateKey } from "./component-config.ts";

const comp = (config: { key: string; value: string }[], id = "app") => ({ id, version: "1", config: [{ key: "image", value: "reg.example/app:1" }, ...config] });

describe("componentSpec", () => {
  test("applies Kanto's defaults", () => {
    const s = componentSpec(comp([]));
    expect(s.restart).toEqual({ policy: "unless-stopped", maxRetries: 0, timeout: 0 });
    expect(s.network).toBe("bridge");
    expect(s.log).toEqual({ driver: "json-file", maxFiles: 2, maxSize: "100M" });
  });

  test("refuses an unknown key, a repeated single key and a missing image, naming the entry", () => {
    expect(() => componentSpec(comp([{ key: "colour", value: "x" }]))).toThrow(/config\[1\] colour="x": unknown key/);
    expect(() => componentSpec(comp([{ key: "network", value: "host" }, { key: "network", value: "bridge" }]))).toThrow(/config\[2\] network.*more than once/);
    expect(() => componentSpec({ id: "x", config: [{ key: "env", value: "A=1" }] })).toThrow(InvalidComponentError);
  });

  test("refuses bad ports, mounts, devices, sizes and policies with the reason", () => {
    expect(() => componentSpec(comp([{ key: "port", value: "80:99999" }]))).toThrow(/container port "99999"/);
    expect(() => componentSpec(comp([{ key: "port", value: "80" }]))).toThrow(/expected \[hostIP:\]hostPort/);
    expect(() => componentSpec(comp([{ key: "mount", value: "relative:/data" }]))).toThrow(/absolute paths/);
    expect(() => componentSpec(comp([{ key: "mount", value: "/a:/b:sideways" }]))).toThrow(/propagation "sideways"/);
    expect(() => componentSpec(comp([{ key: "device", value: "/dev/x:/dev/y:rwx" }]))).toThrow(/permissions/);
    expect(() => componentSpec(comp([{ key: "memory", value: "lots" }]))).toThrow(/not a size/);
    expect(() => componentSpec(comp([{ key: "restartPolicy", value: "sometimes" }]))).toThrow(/must be one of/);
    expect(() => componentSpec(comp([{ key: "restartMaxRetries", value: "3" }]))).toThrow(/needs restartPolicy on-failure/);
  });

  test("parses port ranges and protocols", () => {
    expect(parsePort("127.0.0.1:8000-8010:80/udp")).toEqual({ hostIp: "127.0.0.1", hostPort: "8000-8010", containerPort: 80, proto: "udp" });
    expect(parsePort("8080:80")).toEqual({ hostIp: "", hostPort: "8080", containerPort: 80, proto: "tcp" });
    expect(parseSize("1G")).toBe(1 << 30);
    expect(parseSize("512kb")).toBe(512 << 10);
  });

  test("a port's host IP must be an IPv4 address or an IPv6 one in brackets", () => {
    // Docker publishes a port whose host IP it cannot read on every interface: a mistyped loopback port would be public.
    for (const bad of ["999.999.999.999:18080:80", "127.0.0.256:8080:80", "beef:8080:80", "1234:8080:80", "[127.0.0.1]:8080:80", "[::1:8080:80", "[fe80::1%eth0]:8080:80"]) {
      expect(() => parsePort(bad), bad).toThrow(/host IP/);
    }
    expect(() => parsePort("::1:8080:80")).toThrow(/IPv6 .*in brackets/);
    expect(() => componentSpec(comp([{ key: "port", value: "999.999.999.999:18080:80" }]))).toThrow(/config\[1\] port=.*host IP "999.999.999.999"/);
    expect(parsePort("[::1]:8080:80")).toEqual({ hostIp: "::1", hostPort: "8080", containerPort: 80, proto: "tcp" });
    expect(parsePort("[2001:db8::7]:9000-9001:90/udp")).toEqual({ hostIp: "2001:db8::7", hostPort: "9000-9001", containerPort: 90, proto: "udp" });
    expect(parsePort("0.0.0.0:80:80").hostIp).toBe("0.0.0.0");
  });

  test("a host entry's IP must be an IP address (the engine refuses any other at create, mid-apply)", () => {
    for (const bad of ["x:1.2", "x:999.1.1.1", "x:beef", "x:"]) {
      expect(() => componentSpec(comp([{ key: "host", value: bad }])), bad).toThrow(/config\[1\] host=.*is not an IP address/);
    }
    expect(componentSpec(comp([{ key: "host", value: "db:10.0.0.2" }, { key: "host", value: "db6:fd00::2" }, { key: "host", value: "me:host_ip" }])).hosts).toEqual(["db:10.0.0.2", "db6:fd00::2", "me:host-gateway"]);
  });

  test("a restart policy or memory change touches only the in-place key", () => {
    const a = componentSpec(comp([]));
    const b = componentSpec(comp([{ key: "restartPolicy", value: "always" }, { key: "memory", value: "64M" }]));
    expect(recreateKey(a)).toBe(recreateKey(b));
    expect(updateKey(a)).not.toBe(updateKey(b));
    expect(recreateKey(componentSpec(comp([{ key: "env", value: "A=1" }])))).not.toBe(recreateKey(a));
  });
});

