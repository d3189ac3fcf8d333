import { expect, test } from "bun:test";
import { namedFew } from "./few.ts";

test("names the first few and counts the rest; a short list whole", () => {
  expect(namedFew(["a", "b", "c", "d"], 2)).toBe("a, b and 2 more");
  expect(namedFew(["a", "b"], 2)).toBe("a, b");
  expect(namedFew([], 3)).toBe("");
});
