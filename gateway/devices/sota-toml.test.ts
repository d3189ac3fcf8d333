import { describe, expect, test } from "bun:test";
import { sotaToml } from "./sota-toml.ts";

describe("sotaToml", () => {
  test("writes a TOML file fioup reads: server, hwid, polling, tags and shortlist", () => {
    const text = sotaToml({ server: "https://gw:8443", hardwareId: "arm64-linux", tags: ["main", "beta"], apps: ["a", "b"], pollingSeconds: 30 });
    expect(Bun.TOML.parse(text)).toMatchObject({
      tls: { server: "https://gw:8443" },
      provision: { primary_ecu_hardware_id: "arm64-linux" },
      uptane: { polling_seconds: 30 },
      pacman: { tags: "main,beta", compose_apps: "a,b" },
    });
  });

  test("leaves compose_apps out when the device runs all apps, and escapes quotes", () => {
    const parsed = Bun.TOML.parse(sotaToml({ server: "https://x", hardwareId: 'we"ird', tags: [], pollingSeconds: 300 })) as any;
    expect(parsed.pacman.compose_apps).toBeUndefined();
    expect(parsed.provision.primary_ecu_hardware_id).toBe('we"ird');
  });
});
