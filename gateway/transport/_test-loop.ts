/**
 * For tests of what the transport hands the app: the request loop with no TLS listener around it
 * (placeholder certificate fields, the default limits), and one exchange on a connection of a
 * given peer over a socket that takes every write.
 */
import type { Bindings } from "../env.ts";
import { Connection } from "./connection.ts";
import { FakeSocket } from "./_fake-socket.ts";
import { DEFAULT_LIMITS, type TransportOptions } from "./options.ts";
import { RequestLoop } from "./requests.ts";

/** The app's side of a test loop: what TransportOptions takes besides the listener's address and certificates. */
export type LoopHandlers = Pick<TransportOptions, "fetch"> & Partial<Pick<TransportOptions, "fetchHead" | "admit">>;

/** A request loop over `handlers`, as the TLS listener builds it (host gw.test:8443). */
export function testLoop(handlers: LoopHandlers): RequestLoop {
  return new RequestLoop({ host: "gw.test", port: 8443, cert: "", key: "", clientCa: "", ...handlers }, DEFAULT_LIMITS, {
    stopping: () => false,
    authenticated: () => {},
  });
}

/** What one exchange left: the answer's bytes (the date line blanked), and whether the connection is ending. */
export interface Exchanged {
  text: string;
  ended: boolean;
}

/**
 * Sends one request's bytes on a new connection (kept alive, authenticated as `peer` when given)
 * and waits up to 20 s for the loop to be done with it: answered and ready for the next, or closing.
 */
export async function exchange(loop: RequestLoop, request: string, peer?: Bindings["peer"]): Promise<Exchanged> {
  const sock = new FakeSocket();
  const c = new Connection(sock, "127.0.0.1");
  if (peer) {
    c.peer = peer;
    c.authenticated = true;
  }
  loop.onData(c, Buffer.from(request, "latin1"));
  for (const until = Date.now() + 20_000; c.busy && !c.ending && Date.now() < until; ) await Bun.sleep(1);
  if (c.busy && !c.ending) throw new Error(`the request loop did not answer within 20 s: ${JSON.stringify(request.slice(0, 80))}`);
  return { text: sock.text().replace(/\r\ndate: [^\r]*\r\n/, "\r\ndate: -\r\n"), ended: sock.ended || c.ending };
}
