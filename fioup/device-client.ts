/**
 * HTTPS to the gateway as this device: the client certificate, the gateway CA
 * as the only trust anchor, and the x-ats-* headers on every request.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { GatewayUnreachableError } from "../lib/api/admin-client.ts";
import { checkinList } from "../lib/api/index.ts";
import { netWhy } from "../lib/net/why.ts";
import { ConfigError, type Config } from "./config.ts";
import { FIOUP_VERSION } from "./version.ts";

export class NotRegisteredError extends Error {
  override name = "NotRegisteredError";
  constructor(why: string) {
    super(`This device is not registered: ${why}. Run 'fioup register' first`);
  }
}

export class GatewayError extends Error {
  override name = "GatewayError";
  constructor(
    what: string,
    readonly status: number,
    body: string,
  ) {
    super(`${what}: gateway answered ${status}${body ? ` ${body.slice(0, 300)}` : ""}`);
  }
}

export interface DeviceTls {
  cert: string;
  key: string;
  ca: string;
}

export interface AtsHeaders {
  tags: string[];
  apps: string[];
  target?: string;
}

export class DeviceClient {
  readonly #ats: AtsHeaders | (() => AtsHeaders);

  /**
   * @param ats What every request says of the device (x-ats-*): fixed, or read anew for each
   *   request, as a session reads the running target and tags (fioup/session.ts).
   */
  constructor(
    readonly server: string,
    readonly tls: DeviceTls,
    ats: AtsHeaders | (() => AtsHeaders),
  ) {
    this.#ats = ats;
  }

  /** What the next request says of the device (x-ats-*). */
  get ats(): AtsHeaders {
    return typeof this.#ats === "function" ? this.#ats() : this.#ats;
  }

  /**
   * The client for a registered device.
   *
   * @throws {NotRegisteredError} If the server URL or the key files are missing.
   * @throws {ConfigError} If the certificate, the CA or the key is not one (a damaged file).
   */
  static fromConfig(cfg: Config, ats: AtsHeaders | (() => AtsHeaders)): DeviceClient {
    if (!cfg.server) throw new NotRegisteredError("no tls.server in the config");
    const read = (p: string) => {
      try {
        return readFileSync(p, "utf8");
      } catch {
        throw new NotRegisteredError(`cannot read ${p}`);
      }
    };
    const tls = { cert: read(cfg.certPath), key: read(cfg.keyPath), ca: read(cfg.caPath) };
    // A damaged file failed every request as "FailedToOpenSocket: Was there a typo in the url or
    // port?" (exit 31, gateway unreachable): said here, naming the file.
    const damaged = (p: string, what: string) =>
      new ConfigError(`Cannot use ${p}: it is not ${what} (the device's registration files are damaged: restore them, or register again with fioup register --force)`);
    const [cert] = [[cfg.certPath, tls.cert], [cfg.caPath, tls.ca]].map(([p, pem]) => {
      try {
        return new X509Certificate(pem!);
      } catch {
        throw damaged(p!, "a PEM certificate");
      }
    });
    let key;
    try {
      key = createPrivateKey(tls.key);
    } catch {
      throw damaged(cfg.keyPath, "a PEM private key");
    }
    // A power cut between the two writes of a registration leaves a new key beside the old
    // certificate: every handshake then fails, which read as the network failing for ever.
    if (!cert!.checkPrivateKey(key)) throw damaged(cfg.keyPath, `the key of the certificate ${cfg.certPath}`);
    return new DeviceClient(cfg.server, tls, ats);
  }

  headers(extra?: ConstructorParameters<typeof Headers>[0]): Headers {
    const h = new Headers(extra);
    h.set("user-agent", `fioup/${FIOUP_VERSION}`);
    // What the gateway keeps of each list, and no more (a long head is refused by proxies: lib/api/device.ts).
    const ats = this.ats;
    h.set("x-ats-tags", checkinList(ats.tags));
    h.set("x-ats-dockerapps", checkinList(ats.apps));
    if (ats.target) h.set("x-ats-target", ats.target);
    return h;
  }

  /** A fetch to the gateway (path or absolute URL), authenticated as the device. */
  fetch(pathOrUrl: string, init: RequestInit = {}): Promise<Response> {
    const url = /^https?:\/\//.test(pathOrUrl) ? pathOrUrl : this.server + pathOrUrl;
    return fetch(url, {
      ...init,
      headers: this.headers(init.headers),
      tls: { cert: this.tls.cert, key: this.tls.key, ca: this.tls.ca },
    } as RequestInit);
  }

  /**
   * A JSON request to the gateway.
   *
   * @throws {GatewayUnreachableError} No answer came ("Cannot POST https://gw/events: connection refused ...").
   * @throws {GatewayError} The gateway answered with an error status.
   */
  async json<T>(method: string, path: string, body?: unknown): Promise<T | undefined> {
    let res: Response;
    try {
      res = await this.fetch(path, {
        method,
        ...(body !== undefined ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } } : {}),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (cause) {
      // No cause: its text is Bun's, which netWhy has just put in words (the CLI prints causes).
      throw new GatewayUnreachableError(`Cannot ${method} ${this.server}${path}: ${netWhy(cause)}`);
    }
    const text = await res.text();
    if (!res.ok) throw new GatewayError(`Cannot ${method} ${path}`, res.status, text);
    return text ? (JSON.parse(text) as T) : undefined;
  }
}
