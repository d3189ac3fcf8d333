import { expect, test } from "bun:test";
import { Tag } from "../api/target.ts";
import { UsageError } from "./command.ts";
import { checkFlagValues } from "./flag-values.ts";

test("the first value the schema refuses is bad usage, naming the flag, the rule and the value", () => {
  expect(() => checkFlagValues("--tag", Tag, ["main", "beta"])).not.toThrow();
  expect(() => checkFlagValues("--tag", Tag, [])).not.toThrow();
  const err = (() => {
    try {
      checkFlagValues("--tag", Tag, ["main", "eu/west", "a b"]);
    } catch (e) {
      return e;
    }
  })();
  expect(err).toBeInstanceOf(UsageError);
  expect((err as Error).message).toBe('--tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"');
});
