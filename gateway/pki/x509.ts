/**
 * The one way gateway code loads @peculiar/x509. Bun evaluates the package's
 * CommonJS build while linking, before any ES module body runs, so a static
 * import would load tsyringe before the Reflect polyfill exists; a dynamic
 * import after the polyfill does not. Import types with
 * `import type * as X from "@peculiar/x509"` (erased at run time).
 *
 * @module
 */
import "./reflect-polyfill.ts";

export const x509: typeof import("@peculiar/x509") = await import("@peculiar/x509");
x509.cryptoProvider.set(globalThis.crypto);
