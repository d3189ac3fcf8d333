import { expect, test } from "bun:test";
import { GatewayUnreachableError } from "../lib/api/admin-client.ts";
import { exitCodeFor } from "./exit-codes.ts";

const withCode = (code: string) => Object.assign(new Error(`connect ${code}`), { code });

test("a gateway out of reach is exit 4, whether its error has a class or only a network code", () => {
  expect(exitCodeFor(new GatewayUnreachableError("Cannot GET https://gw/: connection refused"))).toBe(4);
  for (const code of ["ECONNREFUSED", "ConnectionRefused", "FailedToOpenSocket", "ETIMEDOUT", "ECONNRESET", "ENOTFOUND"]) expect(exitCodeFor(withCode(code))).toBe(4);
  expect(exitCodeFor(Object.assign(new Error("The operation timed out."), { name: "TimeoutError" }))).toBe(4);
  expect(exitCodeFor(withCode("EACCES"))).toBe(1);
  expect(exitCodeFor(new Error("something else"))).toBe(1);
});
