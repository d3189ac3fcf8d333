import { describe, expect, test } from "bun:test";
import { ComposeFileError, parseCompose } from "./compose-file.ts";

describe("parseCompose", () => {
  test("lists services with image and build", () => {
    const c = parseCompose(
      "services:\n  app:\n    build: .\n    image: simple-app\n  web:\n    image: nginx:alpine\n  worker:\n    build:\n      context: ./w\n",
      "a/docker-compose.yml",
    );
    expect(c.services).toEqual([
      { name: "app", image: "simple-app", build: true, buildContext: "." },
      { name: "web", image: "nginx:alpine", build: false },
      { name: "worker", build: true, buildContext: "./w" },
    ]);
  });

  test("names the file and the service when a service has neither image nor build", () => {
    expect(() => parseCompose("services:\n  web:\n    ports: ['80:80']\n", "httpd/docker-compose.yml")).toThrow(
      'Invalid compose file httpd/docker-compose.yml, service "web": needs an image or a build section',
    );
  });

  test("a misspelt image or build key is named as the likely cause", () => {
    expect(() => parseCompose("services:\n  web:\n    imgae: nginx\n    ports: ['80:80']\n", "httpd/docker-compose.yml")).toThrow(
      'Invalid compose file httpd/docker-compose.yml, service "web": needs an image or a build section (is "imgae" meant to be image?)',
    );
  });

  test("an invalid YAML message ends with where, not with a colon left from the snippet it drops", () => {
    let message = "";
    try {
      parseCompose("services:\n  web:\n    image: x\n  bad: [\n", "x.yml");
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/not valid YAML: .*line \d+, column \d+$/);
  });

  test("rejects invalid YAML, a missing services map and oversized files", () => {
    expect(() => parseCompose("services: [\n", "x.yml")).toThrow(ComposeFileError);
    expect(() => parseCompose("version: '3'\n", "x.yml")).toThrow("no services section");
    expect(() => parseCompose("services: []\n", "x.yml")).toThrow("services is not a mapping");
    expect(() => parseCompose("- a\n", "x.yml")).toThrow("top level is not a mapping");
    expect(() => parseCompose("services:\n  a:\n    image: [1]\n", "x.yml")).toThrow("image is not a string");
    expect(() => parseCompose("services:\n  a:\n    image: x\n  a:\n    image: y\n", "x.yml")).toThrow("not valid YAML");
    const big = "services:\n  a:\n    image: x\n#" + "x".repeat(1024 * 1024) + "\n";
    expect(() => parseCompose(big, "x.yml")).toThrow("over the limit");
  });
});

describe("parseCompose with anchors and merge keys", () => {
  test("sees images inherited through << merge keys", () => {
    const c = parseCompose("x-base: &base\n  image: nginx:alpine\n  restart: always\nservices:\n  a:\n    <<: *base\n  b:\n    <<: *base\n    image: busybox\n", "m.yml");
    expect(c.services).toEqual([
      { name: "a", image: "nginx:alpine", build: false },
      { name: "b", image: "busybox", build: false },
    ]);
  });
});

describe("parseCompose: extends and env_file", () => {
  test("a service that would take its image or build from extends is refused, saying extends is not supported and to write the service out", () => {
    const text = "services:\n  base:\n    image: nginx:alpine\n  ext:\n    extends:\n      service: base\n";
    expect(() => parseCompose(text, "web/compose.yaml")).toThrow(
      'Invalid compose file web/compose.yaml, service "ext": extends is not supported: nothing follows it to check and pin what the service takes from the other one; write the service out in full',
    );
    // With its own image the parser (the device's too) takes it, marked; publish refuses it (gateway/publish/plan.ts).
    expect(parseCompose("services:\n  ext:\n    image: nginx\n    extends: {service: base, file: common.yml}\n", "web/compose.yaml").services[0]).toEqual({ name: "ext", image: "nginx", build: false, extends: true });
  });

  test("env_file is read as a path, a list of paths, or {path, required} entries; anything else is refused", () => {
    const c = parseCompose(
      "services:\n  a:\n    image: x\n    env_file: a.env\n  b:\n    image: x\n    env_file: [b.env, {path: ./opt.env, required: false}, {path: c.env}]\n",
      "web/compose.yaml",
    );
    expect(c.services.map((s) => s.envFiles)).toEqual([
      [{ path: "a.env", required: true }],
      [{ path: "b.env", required: true }, { path: "./opt.env", required: false }, { path: "c.env", required: true }],
    ]);
    expect(() => parseCompose("services:\n  a:\n    image: x\n    env_file: [{required: true}]\n", "web/compose.yaml")).toThrow(
      'service "a": env_file is neither a file name nor a list of file names or {path, required} entries',
    );
  });
});

describe("parseCompose: bind mounts", () => {
  test("bindSources: the relative host paths a service mounts, short or long, and a named volume bound to a relative device", () => {
    const text = [
      "services:",
      "  a:",
      "    image: x",
      "    volumes: [./conf:/conf:ro, /dev:/dev, data:/data, shared:/shared, '~/.ssh:/ssh', .hidden:/h]",
      "  b:",
      "    image: x",
      "    volumes:",
      "      - {type: bind, source: ../common, target: /c}",
      "      - {type: bind, source: /run/x, target: /x}",
      "      - {type: volume, source: shared, target: /s}",
      "      - {type: volume, source: abs, target: /a}",
      "volumes:",
      "  data: {}",
      "  shared: {driver: local, driver_opts: {type: none, o: bind, device: ../common-data}}",
      "  abs: {driver_opts: {type: none, o: 'bind,ro', device: /srv/abs}}",
    ].join("\n");
    expect(parseCompose(text, "web/compose.yaml").services.map((s) => s.bindSources)).toEqual([
      ["./conf", "../common-data", ".hidden"],
      ["../common", "../common-data"],
    ]);
  });

  test("fileSources: the configs and secrets a service uses whose file is written relative", () => {
    const text = [
      "services:",
      "  a:",
      "    image: x",
      "    configs: [app_conf, {source: abs_conf, target: /etc/a}]",
      "    secrets: [{source: token}, inline]",
      "  b:",
      "    image: x",
      "configs:",
      "  app_conf: {file: ../common/app.conf}",
      "  abs_conf: {file: /etc/abs.conf}",
      "secrets:",
      "  token: {file: ./token.txt}",
      "  inline: {environment: TOKEN}",
    ].join("\n");
    expect(parseCompose(text, "web/compose.yaml").services.map((s) => s.fileSources)).toEqual([
      [
        { kind: "config", name: "app_conf", file: "../common/app.conf" },
        { kind: "secret", name: "token", file: "./token.txt" },
      ],
      undefined,
    ]);
  });
});

describe("parseCompose: include", () => {
  test("a top-level include is refused at publish (with variables), naming the file and what to do; read as is without", () => {
    const text = "include:\n  - db.yml\nservices:\n  a:\n    image: x\n";
    expect(() => parseCompose(text, "web/compose.yaml", { variables: () => undefined })).toThrow(
      "Invalid compose file web/compose.yaml: include is not supported: the services of the files it names are never pinned",
    );
    expect(parseCompose(text, "web/compose.yaml").services.map((s) => s.name)).toEqual(["a"]);
  });
});
