/**
 * A private MQTT broker (Debian's mosquitto 2) on 127.0.0.1:PORT, anonymous access, no
 * persistence: for the MQTT desired-state interface of fioup.
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, portAnswers, Proc, tempDir } from "./tmp.ts";

export interface MosquittoHandle {
  /** `mqtt://127.0.0.1:PORT` */
  url: string;
  host: string;
  port: number;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts `mosquitto -c conf` and waits until its port accepts connections.
 *
 * @example
 * ```ts
 * const mqtt = await startMosquitto();
 * // mosquitto_pub -h 127.0.0.1 -p ${mqtt.port} -t t -m hi
 * afterAll(() => mqtt.stop());
 * ```
 */
export async function startMosquitto(): Promise<MosquittoHandle> {
  const dir = await tempDir("mosquitto-");
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "persistence false",
      "log_dest stderr",
      "log_type error",
      "log_type warning",
      "log_type notice",
      "user root",
      "",
    ].join("\n"),
  );
  const proc = Proc.start({ name: "mosquitto", cmd: ["mosquitto", "-c", conf], logFile: join(dir, "mosquitto.log") });
  await proc.waitUntil(() => portAnswers(port), `listener on 127.0.0.1:${port}`, 15_000);
  const host = `127.0.0.1:${port}`;
  return { url: `mqtt://${host}`, host, port, dir, pid: proc.pid, stop: () => proc.stop(5000) };
}
