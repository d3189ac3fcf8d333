import { describe, expect, test } from "bun:test";
import { parseToml, stringifyToml, TomlSyntaxError } from "./toml.ts";

describe("parseToml", () => {
  test("reads tables, dotted tables, strings, ints, bools and string arrays", () => {
    const t = parseToml(`
# comment
top = "x" # trailing
[tls]
server = "https://gw:8443"
[pacman]
tags = "main,beta"
compose_apps = ["a", 'b']
storage_watermark = 90
enabled = true
[a.b]
"quoted key" = "esc \\"q\\" \\u00e9 \\n"
multi = [
  "one",  # first
  "two",
]
`);
    expect(t).toEqual({
      top: "x",
      tls: { server: "https://gw:8443" },
      pacman: { tags: "main,beta", compose_apps: ["a", "b"], storage_watermark: 90, enabled: true },
      a: { b: { "quoted key": 'esc "q" é \n', multi: ["one", "two"] } },
    });
  });

  test("rejects duplicate keys, bad values and unterminated strings with the line number", () => {
    expect(() => parseToml("a = 1\na = 2")).toThrow(/line 2: duplicate key "a"/);
    expect(() => parseToml("a = nope")).toThrow(TomlSyntaxError);
    expect(() => parseToml('a = "x')).toThrow(/unterminated/);
    expect(() => parseToml("[[arr]]")).toThrow(/arrays of tables/);
  });

  test("a '#' inside a string is not a comment", () => {
    expect(parseToml('a = "x#y"')).toEqual({ a: "x#y" });
  });
});

describe("stringifyToml", () => {
  test("round-trips what parseToml reads", () => {
    const v = { a: "1", tls: { server: "https://x", n: 3, b: false }, pacman: { l: ["x", "y\"z"] }, deep: { er: { k: "v" } } };
    expect(parseToml(stringifyToml(v))).toEqual(v);
  });
});
