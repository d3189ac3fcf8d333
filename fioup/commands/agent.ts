import { defineCommand } from "../../lib/cli/command.ts";
import { abortOnStopSignals } from "../../lib/cli/interrupt.ts";
import { agentConfig, checkAgentFlags } from "../agent/config.ts";
import { Agent } from "../agent/agent.ts";
import { configLocation, loadConfig } from "../config.ts";
import { FIOUP_VERSION } from "../version.ts";
import { sotaDirFlag } from "./_flags.ts";

export default defineCommand({
  summary: "Apply container desired states received over MQTT (Eclipse Kanto's container update protocol)",
  description: [
    "Subscribes to containersupdate/desiredstate, .../desiredstate/command and containersupdate/currentstate/get;",
    "publishes containersupdate/desiredstatefeedback and the retained containersupdate/currentstate.",
    "Flags override the [mqtt] table of sota.toml (registry credentials and insecure registries live there).",
    "SIGTERM stops at the next safe point; an apply interrupted by a crash is finished or rolled back on the next start.",
    "One agent per state dir: run fioup agent, or fioup daemon with an [mqtt] table, not both (a second one exits 13).",
  ].join("\n"),
  flags: {
    ...sotaDirFlag,
    mqtt: { type: "string", description: "Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883", placeholder: "URL", allowEmpty: true },
    "client-cert": { type: "string", description: "Client certificate (PEM) for mTLS to the broker", placeholder: "FILE" },
    "client-key": { type: "string", description: "Client key (PEM) for mTLS to the broker", placeholder: "FILE" },
    ca: { type: "string", description: "CA certificate (PEM) the broker's certificate must chain to", placeholder: "FILE" },
    "client-id": { type: "string", description: "MQTT client id (default fioup-agent-<instance>-<random>)", placeholder: "ID" },
    "system-containers": { type: "string", description: "Containers the agent never touches, comma-separated", placeholder: "a,b" },
    instance: { type: "string", description: "Owner name put on the containers this agent creates (default: default)", placeholder: "NAME" },
    "state-dir": { type: "string", description: "Where the activity in progress is kept (default <storage.path>/agent)", placeholder: "DIR" },
    "insecure-registry": { type: "strings", description: "A registry reached over plain HTTP (repeat it, or list several with commas)", placeholder: "HOST:PORT" },
    "command-flow": { type: "boolean", description: "Wait for DOWNLOAD/UPDATE/ACTIVATE/CLEANUP commands after IDENTIFIED (as Kanto does)" },
  },
  async run({ flags, out }) {
    // Its own flags first: a value typed wrong is said as such, before the config, the engine or the broker.
    checkAgentFlags(flags);
    const cfg = agentConfig(loadConfig(configLocation(flags)), flags);
    const stop = abortOnStopSignals("SIGTERM", "ignored");
    try {
      await new Agent({ cfg, signal: stop.signal, version: FIOUP_VERSION, log: (l) => out.info(`${new Date().toISOString()} ${l}`) }).run();
    } finally {
      stop.release();
    }
  },
});
