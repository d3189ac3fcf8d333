import { describe, expect, test } from "bun:test";
import { parseCompose } from "./compose-file.ts";
import { InterpolationError, interpolateString, parseDotEnv } from "./interpolate.ts";
import { pinCompose } from "./pin.ts";

const vars = (o: Record<string, string>) => (n: string) => (Object.hasOwn(o, n) ? o[n] : undefined);
const site = { file: "app/compose.yaml", line: 3 };
const i = (s: string, o: Record<string, string> = {}) => interpolateString(s, vars(o), site);

describe("interpolateString", () => {
  test("substitutes ${VAR} and $VAR", () => {
    expect(i("${A}/$B-x", { A: "a", B: "b" })).toBe("a/b-x");
  });

  test(":- takes the default when unset or empty, - only when unset", () => {
    expect(i("${BASE_IMAGE:-local/busybox:1}")).toBe("local/busybox:1");
    expect(i("${A:-d}", { A: "" })).toBe("d");
    expect(i("${A-d}", { A: "" })).toBe("");
    expect(i("${A-d}")).toBe("d");
    expect(i("${A:-d}", { A: "set" })).toBe("set");
  });

  test(":? and ? fail with the author's message; :+ and + substitute only when set", () => {
    expect(() => i("${TOKEN:?set TOKEN in CI}")).toThrow('Cannot interpolate app/compose.yaml:3: variable "TOKEN" is not set: set TOKEN in CI');
    expect(() => i("${TOKEN:?}", { TOKEN: "" })).toThrow('variable "TOKEN" is empty');
    expect(i("${TOKEN?x}", { TOKEN: "" })).toBe("");
    expect(i("${A:+on}", { A: "1" })).toBe("on");
    expect(i("${A:+on}", { A: "" })).toBe("");
    expect(i("${A+on}", { A: "" })).toBe("on");
  });

  test("$$ is a literal $, and defaults may nest variables", () => {
    expect(i("echo $$HOME $${X}")).toBe("echo $HOME ${X}");
    expect(i("${A:-${B:-deep}}")).toBe("deep");
    expect(i("${A:-${B}}", { B: "b" })).toBe("b");
  });

  test("an unset variable without a default names the file, line and variable", () => {
    let err: unknown;
    try {
      i("image: ${IMAGE}:1");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InterpolationError);
    expect((err as InterpolationError).message).toStartWith('Cannot interpolate app/compose.yaml:3: variable "IMAGE" is not set and has no default');
    expect((err as InterpolationError).variable).toBe("IMAGE");
    expect(() => i("cost: $")).toThrow('write "$$" for a literal "$"');
    expect(() => i("${A")).toThrow("unclosed");
    expect(() => i("${A:x}")).toThrow("invalid modifier");
    expect(() => i("${1A}")).toThrow("invalid variable name");
  });
});

describe("parseDotEnv", () => {
  test("reads KEY=VALUE lines, comments, export, quotes and earlier keys", () => {
    const env = parseDotEnv(
      "# comment\n\nexport A=1\nB = two words # trailing\nC='${A} literal'\nD=\"${A}\\nx\"\nE=${A}-${F:-f}\n",
      "app/.env",
    );
    expect(env).toEqual({ A: "1", B: "two words", C: "${A} literal", D: "1\nx", E: "1-f" });
  });

  test("the outer environment wins inside .env values too, and a bad line names the file and line", () => {
    expect(parseDotEnv("B=${A}\n", ".env", { A: "outer" })).toEqual({ B: "outer" });
    expect(() => parseDotEnv("A=1\nnot a pair\n", "app/.env")).toThrow('Cannot interpolate app/.env:2 has a line that is not KEY=VALUE: "not a pair"');
  });
});

describe("parseCompose with variables", () => {
  const src = "# keep me\nservices:\n  web:\n    image: ${BASE_IMAGE:-local/busybox:1}\n    command: echo $$HOME ${GREETING}\n    healthcheck:\n      test: [\"CMD-SHELL\", \"wget -qO- http://127.0.0.1:$${PORT:-80}/ || exit 1\"]\n";

  test("interpolates values with the line of the failing variable", () => {
    expect(() => parseCompose(src, "web/compose.yaml", { variables: vars({}) })).toThrow(
      'Cannot interpolate web/compose.yaml:5: variable "GREETING" is not set and has no default',
    );
    const c = parseCompose(src, "web/compose.yaml", { variables: vars({ GREETING: "hi" }) });
    expect(c.services[0]!.image).toBe("local/busybox:1");
  });

  test("the pinned text keeps resolved values, escapes $ as $$, and keeps comments", async () => {
    const c = parseCompose(src, "web/compose.yaml", { variables: vars({ GREETING: "hi $USER" }) });
    const pinned = await pinCompose(c, async () => `r.local:5000/main/busybox@sha256:${"a".repeat(64)}`);
    expect(pinned.text).toContain("# keep me");
    expect(pinned.text).toContain("command: echo $$HOME hi $$USER");
    expect(pinned.text).toContain("$${PORT:-80}");
    expect(pinned.text).not.toContain("GREETING");
    // Read back as compose would (interpolating with nothing set), the values are what publish resolved.
    const back = parseCompose(pinned.text, "web/compose.yaml", { variables: vars({}) });
    expect(back.doc.getIn(["services", "web", "command"])).toBe("echo $HOME hi $USER");
  });

  test("build args: map and list forms, bare keys from the variables", () => {
    const c = parseCompose(
      "services:\n  a:\n    build:\n      context: ./api\n      dockerfile: Dockerfile.prod\n      target: run\n      args:\n        V: ${V:-1}\n        FROM_ENV:\n  b:\n    build:\n      context: ./b\n      args: [\"X=1\", FROM_ENV]\n",
      "x/compose.yaml",
      { variables: vars({ FROM_ENV: "e" }) },
    );
    expect(c.services[0]).toEqual({ name: "a", build: true, buildContext: "./api", dockerfile: "Dockerfile.prod", buildTarget: "run", buildArgs: { V: "1", FROM_ENV: "e" } });
    expect(c.services[1]!.buildArgs).toEqual({ X: "1", FROM_ENV: "e" });
  });

  test("without variables nothing is interpolated (the device reads pinned files as they are)", () => {
    const c = parseCompose("services:\n  a:\n    image: x\n    command: echo $$A\n", "a.yml");
    expect(c.interpolated).toBe(false);
    expect(c.doc.getIn(["services", "a", "command"])).toBe("echo $$A");
  });
});
