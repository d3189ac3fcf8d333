/**
 * The embedded registry alone in its own process (so its RSS can be measured apart from the
 * benchmark client): `bun bench/registry/serve.ts ROOT` prints `listening http://127.0.0.1:PORT`
 * on stderr (started by ./_embedded.ts). Open access (benchmark only); plain HTTP on loopback.
 */
import { createRegistry } from "../../gateway/registry/index.ts";

const root = process.argv[2];
if (!root) {
  console.error("usage: bun bench/registry/serve.ts ROOT");
  process.exit(2);
}
const app = createRegistry({ root, authorize: () => true });
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, maxRequestBodySize: 16 * 1024 ** 3, idleTimeout: 0 });
console.error(`listening http://127.0.0.1:${server.port}`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
