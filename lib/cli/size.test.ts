import { expect, test } from "bun:test";
import { sizeText } from "./bytes.ts";
import { parseSize } from "./size.ts";

test("sizes people write read as bytes in binary units; anything else is undefined", () => {
  expect(parseSize("512M")).toBe(512 << 20);
  expect(parseSize("2G")).toBe(2 * 1024 ** 3);
  expect(parseSize("2GiB")).toBe(2 * 1024 ** 3);
  expect(parseSize("512kb")).toBe(512 << 10);
  expect(parseSize("1t")).toBe(1024 ** 4);
  expect(parseSize("1048576")).toBe(1048576);
  expect(parseSize("96B")).toBe(96);
  for (const bad of ["", "M", "1.5G", "-1M", "12X", "1ib", "512 MB extra", "99999999999T"]) expect(parseSize(bad), bad).toBeUndefined();
  // What sizeText prints, parseSize reads back.
  expect(parseSize(sizeText(3 << 20).replace(".0 ", ""))).toBe(3 << 20);
});
