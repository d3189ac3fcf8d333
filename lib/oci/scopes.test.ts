import { expect, test } from "bun:test";
import { mergeScopes } from "./registry-client.ts";

test("mergeScopes: one scope per repository, actions merged and sorted, order-independent", () => {
  expect(mergeScopes(["repository:a:pull,push", "repository:a:push,pull", "repository:b:pull"])).toEqual(["repository:a:pull,push", "repository:b:pull"]);
  expect(mergeScopes(["repository:b:pull", "repository:a:push", "repository:a:pull"])).toEqual(["repository:a:pull,push", "repository:b:pull"]);
  expect(mergeScopes(["registry:catalog:*"])).toEqual(["registry:catalog:*"]);
  expect(mergeScopes([])).toEqual([]);
});
