import { expect, test } from "bun:test";
import { toPem, whyNotPem } from "./pem.ts";

test("whyNotPem says why a text holds no PEM block (of the label, when given), and nothing for one that does", () => {
  const cert = toPem(new Uint8Array([1, 2, 3]), "CERTIFICATE");
  expect(whyNotPem(cert)).toBeUndefined();
  expect(whyNotPem(cert, "CERTIFICATE")).toBeUndefined();
  expect(whyNotPem("{}\n")).toBe("it holds no PEM (expected -----BEGIN ...)");
  expect(whyNotPem(cert, "PRIVATE KEY")).toBe("it holds no PEM PRIVATE KEY (expected -----BEGIN PRIVATE KEY-----)");
});
