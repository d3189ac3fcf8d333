/** The publish tests use the shared harness gateway (real `gateway serve` on 127.0.0.1). */
export { startGateway, type GatewayHandle } from "../harness/gateway.ts";
