import { expect, test } from "bun:test";
import { classifyTufError, InvalidMetadataError, MetadataFetchError } from "./verification-errors.ts";

test("a connection that failed is a fetch failure, by its code or by the code in a wrapped message", () => {
  const reset = Object.assign(new Error("read failed"), { code: "ECONNRESET" });
  expect(classifyTufError(reset, "timestamp.json")).toBeInstanceOf(MetadataFetchError);
  expect(classifyTufError(new Error("Unable to load targets metadata error Error: connect ECONNREFUSED 127.0.0.1:8443"))).toBeInstanceOf(MetadataFetchError);
  expect(classifyTufError(new Error("Unable to load snapshot metadata error Error: getaddrinfo ENOTFOUND gw"))).toBeInstanceOf(MetadataFetchError);
  expect(classifyTufError(new Error("Unable to load targets metadata error Error: bad"))).toBeInstanceOf(InvalidMetadataError);
});
