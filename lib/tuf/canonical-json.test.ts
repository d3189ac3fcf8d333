import { describe, expect, test } from "bun:test";
import { canonicalJson, CanonicalJsonError } from "./canonical-json.ts";

describe("canonicalJson", () => {
  test("sorts keys and drops whitespace", () => {
    expect(canonicalJson({ b: [1, true, null], a: { d: "x", c: -2 } })).toBe('{"a":{"c":-2,"d":"x"},"b":[1,true,null]}');
  });
  test("escapes only backslash and double quote", () => {
    expect(canonicalJson('a"b\\c\nd')).toBe('"a\\"b\\\\c\nd"');
  });
  test("sorts keys by code unit, as the TUF verifier does", () => {
    expect(canonicalJson({ b: 1, B: 2, "é": 3, a: 4 })).toBe('{"B":2,"a":4,"b":1,"é":3}');
  });
  test("refuses floats and undefined with the path", () => {
    expect(() => canonicalJson({ a: { b: 1.5 } })).toThrow(CanonicalJsonError);
    expect(() => canonicalJson({ a: { b: 1.5 } })).toThrow(/\.a\.b/);
    expect(() => canonicalJson({ a: undefined })).toThrow(CanonicalJsonError);
  });
});
