/**
 * `--trust-proxy CIDR,...`: the addresses whose client-certificate header we
 * believe. Anyone else sending that header is ignored, not trusted.
 *
 * @module
 */
import { BlockList, isIP } from "node:net";
import { commaList } from "../lib/cli/comma-list.ts";

export class InvalidCidrError extends Error {
  override name = "InvalidCidrError";
  constructor(value: string) {
    super(`Invalid --trust-proxy entry "${value}": expected an address or CIDR such as 10.0.0.0/8 or ::1/128`);
  }
}

export class TrustedProxies {
  readonly #list = new BlockList();
  readonly size: number;

  constructor(spec: string | undefined) {
    const parts = commaList(spec);
    for (const p of parts) {
      const [addr, bits] = p.split("/");
      const family = isIP(addr ?? "");
      if (!family) throw new InvalidCidrError(p);
      const max = family === 4 ? 32 : 128;
      const prefix = bits === undefined ? max : Number(bits);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^[0-9]+$/.test(bits))) throw new InvalidCidrError(p);
      this.#list.addSubnet(addr!, prefix, family === 4 ? "ipv4" : "ipv6");
    }
    this.size = parts.length;
  }

  has(address: string | undefined): boolean {
    if (!address || this.size === 0) return false;
    const v4 = /^::ffff:([0-9.]+)$/i.exec(address)?.[1];
    if (v4) return this.#list.check(v4, "ipv4");
    const family = isIP(address);
    return family !== 0 && this.#list.check(address, family === 4 ? "ipv4" : "ipv6");
  }
}
