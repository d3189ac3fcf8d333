import { expect, test } from "bun:test";
import { sizeText } from "./bytes.ts";

test("sizes read in binary units with one decimal, whole bytes below a KiB", () => {
  expect(sizeText(0)).toBe("0 B");
  expect(sizeText(96)).toBe("96 B");
  expect(sizeText(1559)).toBe("1.5 KiB");
  expect(sizeText(1559, { exact: true })).toBe("1.5 KiB (1559 bytes)");
  expect(sizeText(96, { exact: true })).toBe("96 B");
  expect(sizeText(5 * 1024 ** 3)).toBe("5.0 GiB");
});
