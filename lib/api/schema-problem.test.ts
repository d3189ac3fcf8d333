import { expect, test } from "bun:test";
import { Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { describeSchemaProblem, fieldPath, schemaProblem } from "./schema-problem.ts";

const Count = Type.Union([Type.Integer(), Type.String({ pattern: "^[0-9]+$" })], { expected: "a whole number" });
const Doc = Type.Object({
  count: Type.Optional(Count),
  events: Type.Array(Type.Object({ kind: Type.String() })),
  mode: Type.Optional(Type.Union([Type.Literal("a"), Type.Literal("b")])),
});

test("names the field as people write it, what it should be and what it is", () => {
  expect(describeSchemaProblem(Doc, { events: [{ kind: 5 }] })).toBe("events[0].kind: expected string, got 5");
  expect(describeSchemaProblem(Doc, {})).toBe("events: is required");
  expect(describeSchemaProblem(Doc, [], "the body")).toBe("the body: expected object, got a list");
});

test("a union says what it takes: its own words when the schema has them, else its members'", () => {
  expect(describeSchemaProblem(Doc, { events: [], count: "many" })).toBe('count: expected a whole number, got "many"');
  expect(describeSchemaProblem(Doc, { events: [], mode: "c" })).toBe("mode: expected 'a' or 'b', got \"c\"");
});

test("a compiled check gives the same; a matching value has no problem", () => {
  expect(describeSchemaProblem(TypeCompiler.Compile(Doc), { events: [{ kind: 5 }] })).toBe("events[0].kind: expected string, got 5");
  expect(schemaProblem(Doc, { events: [] })).toBeUndefined();
});

test("fieldPath quotes keys that are not names", () => {
  expect(fieldPath("/containers/tagging/refs~1heads~1main/0/tag")).toBe('containers.tagging["refs/heads/main"][0].tag');
  expect(fieldPath("")).toBe("");
});
