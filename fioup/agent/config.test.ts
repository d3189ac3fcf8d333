import { describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { ConfigError, resolveConfig } from "../config.ts";
import { agentConfig, hasMqttConfig } from "./config.ts";
import { UsageError } from "../../lib/cli/command.ts";

const cfg = (mqtt: Record<string, unknown>) => resolveConfig({ mqtt } as any, { root: "/tmp/dev", sotaDir: "/tmp/dev/var/sota" });

describe("agentConfig", () => {
  test("reads the [mqtt] table: broker, system containers, registries, insecure registries", () => {
    const c = agentConfig(
      cfg({
        url: "mqtt://127.0.0.1:1883",
        system_containers: "a, b",
        insecure_registries: ["10.0.0.5:5000"],
        registries: { "reg.example.com": { username: "robot", password: "pw" } },
      }),
    );
    expect(c).toMatchObject({ url: "mqtt://127.0.0.1:1883", systemContainers: ["a", "b"], instance: "default", commandFlow: false, stateDir: "/tmp/dev/var/sota/agent" });
    expect(c.registries).toEqual({ "reg.example.com": { username: "robot", password: "pw", ca: undefined }, "10.0.0.5:5000": { insecure: true } });
  });

  test("flags win over the table", () => {
    const c = agentConfig(cfg({ url: "mqtt://a:1", system_containers: "x" }), { mqtt: "mqtts://b:8883", "system-containers": "y", "insecure-registry": ["h:1"], "command-flow": true });
    expect(c).toMatchObject({ url: "mqtts://b:8883", systemContainers: ["y"], commandFlow: true });
    expect(c.registries["h:1"]).toEqual({ insecure: true });
    // A flag's list is read as the config's is: comma-separated, trimmed.
    const d = agentConfig(cfg({ url: "mqtt://a:1" }), { "insecure-registry": ["h:1, h:2", "h:3"] });
    expect(Object.keys(d.registries)).toEqual(["h:1", "h:2", "h:3"]);
  });

  test("refuses a missing broker, a wrong URL and an unknown key, naming it", () => {
    expect(() => agentConfig(cfg({}))).toThrow(ConfigError);
    expect(() => agentConfig(cfg({ url: "http://x" }))).toThrow(/Invalid MQTT URL/);
    // The same from --mqtt is bad usage (exit 2), naming the flag.
    expect(() => agentConfig(cfg({ url: "mqtt://x:1" }), { mqtt: "notaurl" })).toThrow(new UsageError('--mqtt: expected an mqtt:// (or tcp://), mqtts:// (or tls://), ws:// or wss:// URL with a host, got "notaurl"'));
    expect(() => agentConfig(cfg({ url: "mqtt://x:1", sytem_containers: "a" }))).toThrow(/mqtt\.sytem_containers/);
    expect(() => agentConfig(cfg({ url: "mqtt://x:1", client_cert: "/nonexistent.pem" }))).toThrow(/Cannot read the client certificate/);
    // One rule for the instance name, in the table and from --instance.
    const rule = 'expected an instance name (letters, digits, . _ -; at most 64, starting with a letter or digit), got "a/b"';
    expect(() => agentConfig(cfg({ url: "mqtt://x:1", instance: "a/b" }))).toThrow(`Invalid config at mqtt.instance: ${rule}`);
    expect(() => agentConfig(cfg({ url: "mqtt://x:1" }), { instance: "a/b" })).toThrow(new UsageError(`--instance: ${rule}`));
  });

  test("a state_dir the agent could not write is a config error at the start, as --state-dir is bad usage", () => {
    const file = `${tmpdir()}/agent-state-${process.pid}`;
    writeFileSync(file, "not a folder");
    try {
      expect(() => agentConfig(cfg({ url: "mqtt://x:1", state_dir: file }))).toThrow(new ConfigError(`Invalid config at mqtt.state_dir: ${file}: it is a file, give a folder`));
      expect(() => agentConfig(cfg({ url: "mqtt://x:1", state_dir: `${file}/sub` }))).toThrow(`${file} is a file, not a folder`);
      expect(() => agentConfig(cfg({ url: "mqtt://x:1" }), { "state-dir": file })).toThrow(new UsageError(`--state-dir ${file}: it is a file, give a folder`));
      // The flag wins over the table: a good --state-dir is used, the table's value not looked at.
      expect(agentConfig(cfg({ url: "mqtt://x:1", state_dir: file }), { "state-dir": tmpdir() }).stateDir).toBe(tmpdir());
    } finally {
      rmSync(file, { force: true });
    }
  });

  test("a misspelt [mqtt] key is an error that names the key meant", () => {
    expect(() => agentConfig(cfg({ url: "mqtt://x:1", pasword: "pw" }))).toThrow(new ConfigError("Invalid config at mqtt.pasword: not a key fioup reads (did you mean password?)"));
    expect(() => agentConfig(cfg({ url: "mqtt://x:1", registries: { "r.io": { usrname: "u" } } }))).toThrow('Invalid config at mqtt.registries["r.io"].usrname: not a key fioup reads (did you mean username?)');
    // Nothing close: the keys it reads.
    expect(() => agentConfig(cfg({ url: "mqtt://x:1", zzz: 1 }))).toThrow(/^Invalid config at mqtt\.zzz: not a key fioup reads \(known: url, client_id, .*, registries\)$/);
  });

  test("a password in a broker URL is masked in its errors", () => {
    expect(() => agentConfig(cfg({ url: "http://dev:secret@x" }))).toThrow('Invalid MQTT URL "http://dev:***@x" at mqtt.url');
    expect(() => agentConfig(cfg({ url: "mqtt://x:1" }), { mqtt: "mqt://dev:secret@x" })).toThrow('got "mqt://dev:***@x"');
  });

  test("Kanto's tcp:// and tls:// broker URLs are read as mqtt:// and mqtts://", () => {
    // MQTT.js throws on tcp:// or tls:// once a client certificate is given: the agent hands it its own schemes.
    expect(agentConfig(cfg({ url: "tcp://localhost:1883" })).url).toBe("mqtt://localhost:1883");
    expect(agentConfig(cfg({ url: "mqtt://x:1" }), { mqtt: "tls://b:8883" }).url).toBe("mqtts://b:8883");
  });

  test("a bad [mqtt] value names the file that set it", () => {
    const origins = { mqtt: "/etc/sota/conf.d/70-mqtt.toml", "mqtt.url": "/etc/sota/conf.d/70-mqtt.toml", 'mqtt.registries["r.io"]': "/usr/lib/sota/conf.d/10-r.toml" };
    const at = (mqtt: Record<string, unknown>) => resolveConfig({ mqtt } as any, { root: "/tmp/dev", sotaDir: "/tmp/dev/var/sota", origins });
    expect(() => agentConfig(at({ url: 5 }))).toThrow("Invalid config at mqtt.url: expected string, got 5 (set in /etc/sota/conf.d/70-mqtt.toml)");
    expect(() => agentConfig(at({ url: "http://x" }))).toThrow("(set in /etc/sota/conf.d/70-mqtt.toml)");
    expect(() => agentConfig(at({ url: "mqtt://x:1", registries: { "r.io": { user: "u" } } }))).toThrow(/^Invalid config at mqtt\.registries\["r\.io"\]\.user: .* \(set in \/usr\/lib\/sota\/conf\.d\/10-r\.toml\)$/);
  });

  test("the daemon runs the agent only with an [mqtt] url", () => {
    expect(hasMqttConfig(cfg({ url: "mqtt://x:1" }))).toBe(true);
    expect(hasMqttConfig(resolveConfig({}, { root: "", sotaDir: "/tmp" }))).toBe(false);
  });
});
