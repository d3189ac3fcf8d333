/**
 * @peculiar/x509, loaded at module evaluation (top-level await) for code that
 * uses it on every run (the gateway's PKI). See index.ts for why it is not a
 * static import.
 *
 * @module
 */
import { loadX509, type X509 } from "./index.ts";

export const x509: X509 = await loadX509();
