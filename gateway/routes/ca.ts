/**
 * GET /ca.pem: the factory CA, served to anyone. Clients check its sha256
 * against the pin in their token before trusting it.
 */
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";

export const caPem = new Hono<GatewayEnv>().get("/ca.pem", (c) =>
  c.body(c.var.gw.ca.certPem, 200, { "content-type": "application/x-pem-file" }),
);
