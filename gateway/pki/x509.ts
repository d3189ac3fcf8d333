/**
 * Gateway PKI's handle on @peculiar/x509: the shared loader in lib/x509
 * (kept so existing `./x509.ts` importers need no change).
 *
 * @module
 */
export { x509 } from "../../lib/x509/eager.ts";
