/**
 * The one way project code loads @peculiar/x509. The package needs the
 * Reflect metadata API (see reflect-polyfill.ts), and Bun evaluates its
 * CommonJS build while linking, before any ES module body runs, so a static
 * import would load tsyringe before the polyfill exists; a dynamic import after
 * the polyfill does not. Import types with
 * `import type * as X from "@peculiar/x509"` (erased at run time).
 *
 * `loadX509()` loads on first use (the device CLI needs it only to register);
 * `lib/x509/eager.ts` exports the loaded module for code that always needs it.
 *
 * @module
 */
import "./reflect-polyfill.ts";

export type X509 = typeof import("@peculiar/x509");

let loading: Promise<X509> | undefined;

/** @peculiar/x509 with the Reflect polyfill installed and WebCrypto as its provider. */
export function loadX509(): Promise<X509> {
  loading ??= import("@peculiar/x509").then((x509) => {
    x509.cryptoProvider.set(globalThis.crypto);
    return x509;
  });
  return loading;
}
