import { expect, test } from "bun:test";
import { tagsText } from "./tags-text.ts";

test("tagsText says the tags a device follows only where they are another set", () => {
  expect(tagsText({ tags: ["main"], reportedTags: ["canary"] })).toBe("main (follows canary)");
  expect(tagsText({ tags: ["main", "beta"], reportedTags: ["beta", "main"] }, ",")).toBe("main,beta");
  expect(tagsText({ tags: ["main"], reportedTags: null })).toBe("main");
  expect(tagsText({ tags: ["main"] })).toBe("main");
  expect(tagsText({ tags: [], reportedTags: [] })).toBe("-");
  expect(tagsText({ tags: ["main"], reportedTags: [] })).toBe("main (follows no tag)");
  expect(tagsText({ tags: [], reportedTags: ["a", "b"] }, ",")).toBe("- (follows a,b)");
});
