/**
 * What `fioup agent` says about its broker: never the password of a broker URL, and, when the
 * broker cannot be reached or refuses the login, which broker and why in words (with the hint
 * the URL makes obvious), once per problem rather than at every retry.
 *
 * A private mosquitto on loopback that wants a login (dev / secret), the shared test dockerd
 * (the agent asks the engine for its version before it connects), `fioup agent` as a process.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { freePort, portAnswers, Proc, tempDir } from "../harness/tmp.ts";
import { ROOT } from "../fioup/_setup.ts";
import { createCa, issueServerCert } from "../../gateway/pki/ca.ts";

let dockerd: DockerdHandle;
let broker: Proc;
let port: number;
let dir: string;
/** A TLS listener of the same broker, its certificate from a private CA (brokerCa, a PEM file). */
let tlsPort: number;
let brokerCa: string;

beforeAll(async () => {
  [dockerd, dir, port, tlsPort] = await Promise.all([startDockerd(), tempDir("kanto-broker-"), freePort(), freePort()]);
  const ca = await createCa("broker");
  const server = await issueServerCert(ca, ["127.0.0.1"]);
  brokerCa = join(dir, "broker-ca.pem");
  writeFileSync(brokerCa, ca.certPem);
  writeFileSync(join(dir, "broker.pem"), server.certPem);
  writeFileSync(join(dir, "broker.key"), server.keyPem);
  const passwd = join(dir, "passwd");
  writeFileSync(passwd, "");
  Bun.spawnSync(["mosquitto_passwd", "-b", passwd, "dev", "secret"], { stderr: "inherit" });
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    `allow_anonymous false\npassword_file ${passwd}\npersistence false\nlog_dest stderr\nlog_type all\nuser root\n` +
      `listener ${port} 127.0.0.1\nlistener ${tlsPort} 127.0.0.1\ncertfile ${join(dir, "broker.pem")}\nkeyfile ${join(dir, "broker.key")}\n`,
  );
  broker = Proc.start({ name: "mosquitto", cmd: ["/usr/sbin/mosquitto", "-c", conf], logFile: join(dir, "mosquitto.log") });
  await broker.waitUntil(async () => (await portAnswers(port)) && (await portAnswers(tlsPort)), `listeners on 127.0.0.1:${port} and ${tlsPort}`, 15_000);
}, 120_000);

afterAll(async () => {
  await broker?.stop(5000);
  await dockerd?.stop();
});

/** `fioup agent` with this `[mqtt]` table (lines), its own device dir and log. */
function agent(name: string, mqtt: string[]): Proc {
  const root = join(dir, name);
  mkdirSync(join(root, "var/sota"), { recursive: true });
  writeFileSync(join(root, "var/sota/sota.toml"), ["[fioup]", `docker_host = "${dockerd.host}"`, "[mqtt]", `instance = "${name}"`, ...mqtt, ""].join("\n"));
  return Proc.start({
    name: "fioup agent",
    cmd: [process.execPath, join(ROOT, "fioup/main.ts"), "agent", "--sota-dir", join(root, "var/sota")],
    env: { FIOUP_ROOT: root, DOCKER_HOST: dockerd.host },
    cwd: ROOT,
    logFile: join(root, "agent.log"),
  });
}

/** Runs an agent until its log shows `pattern`, then `linger` ms more (retries happen meanwhile); returns the log. */
async function logOf(name: string, mqtt: string[], pattern: RegExp, linger = 0): Promise<string> {
  const p = agent(name, mqtt);
  try {
    await p.waitForLog(pattern, 30_000);
    await Bun.sleep(linger);
    return readFileSync(p.logFile, "utf8");
  } finally {
    await p.stop(5000);
  }
}

const count = (text: string, s: string) => text.split(s).length - 1;
/** The agent's connection attempts the broker saw so far. */
const attempts = () => count(readFileSync(broker.logFile, "utf8"), "New connection from");

describe("fioup agent and its broker", () => {
  test("a TLS broker whose CA the agent was not given says so and which key sets it; with ca set it connects", async () => {
    const mqtt = [`url = "mqtts://127.0.0.1:${tlsPort}"`, 'username = "dev"', 'password = "secret"'];
    const untrusted = await logOf("tls-untrusted", mqtt, /Cannot connect to the broker/);
    expect(untrusted).toMatch(new RegExp(`Cannot connect to the broker mqtts://127\\.0\\.0\\.1:${tlsPort}: its TLS certificate is not trusted \\(.+\\): set ca in the \\[mqtt\\] table, or --ca, to the CA that signed it`));
    const trusted = await logOf("tls-trusted", [...mqtt, `ca = "${brokerCa}"`], /connected to /);
    expect(trusted).toContain(`connected to mqtts://127.0.0.1:${tlsPort}`);
  }, 60_000);

  test("a password in the broker URL is never logged: the agent says it connected to mqtt://dev:***@host:port", async () => {
    const log = await logOf("creds", [`url = "mqtt://dev:secret@127.0.0.1:${port}"`], /connected to /);
    expect(log).toContain(`connected to mqtt://dev:***@127.0.0.1:${port}`);
    expect(log).not.toContain("secret");
    // The URL is read by the agent, not handed to MQTT.js's url.parse: no Node deprecation noise in the journal.
    expect(log).not.toContain("DeprecationWarning");
  }, 60_000);

  test("username and password keys of [mqtt] log the agent in", async () => {
    const log = await logOf("keys", [`url = "mqtt://127.0.0.1:${port}"`, `username = "dev"`, `password = "secret"`], /connected to /);
    expect(log).toContain(`connected to mqtt://127.0.0.1:${port}`);
  }, 60_000);

  test("a refused login names the broker and the keys to check", async () => {
    const log = await logOf("wrong", [`url = "mqtt://127.0.0.1:${port}"`, `username = "dev"`, `password = "wrong"`], /Cannot connect to /);
    expect(log).toMatch(new RegExp(`Cannot connect to the broker mqtt://127\\.0\\.0\\.1:${port}: the broker refused the login: .* \\(check username and password in the \\[mqtt\\] table\\); reconnecting in 1000 ms`));
    expect(log).not.toContain("wrong");
  }, 60_000);

  test("mqtts:// to a plain port asks whether the port is TLS, once across its retries, without the password", async () => {
    const before = attempts();
    const log = await logOf("tls", [`url = "mqtts://dev:secret@127.0.0.1:${port}"`], /Cannot connect to /, 4000);
    const line = `Cannot connect to the broker mqtts://dev:***@127.0.0.1:${port}: the connection was closed before an answer came (is the broker's port TLS? use mqtt:// for a plain port)`;
    expect(log).toContain(line);
    expect(count(log, "Cannot connect to")).toBe(1);
    // It did retry (after 1 s and 2 s more), only quietly.
    expect(attempts() - before).toBeGreaterThanOrEqual(3);
    expect(log).not.toContain("secret");
    expect(log).not.toContain("MQTT error");
  }, 60_000);

  test("a port nothing listens on and an unknown host are said in words, each once", async () => {
    const free = await freePort();
    const refused = await logOf("refused", [`url = "mqtt://127.0.0.1:${free}"`], /Cannot connect to /, 3500);
    expect(refused).toContain(`Cannot connect to the broker mqtt://127.0.0.1:${free}: connection refused (is it running at that address?); reconnecting in 1000 ms`);
    expect(count(refused, "Cannot connect to")).toBe(1);
    const unknown = await logOf("unknown", [`url = "mqtt://no-such-host.invalid:1883"`], /Cannot connect to /);
    expect(unknown).toContain("Cannot connect to the broker mqtt://no-such-host.invalid:1883: no such host");
  }, 60_000);
});
