/**
 * The broker URL read into MQTT.js's options: the URL's credentials as username and password, so a
 * password holding a colon arrives whole (MQTT.js's own `auth` is split at the last colon).
 */
import { expect, test } from "bun:test";
import { brokerOptions } from "./agent.ts";

test("a broker URL's credentials arrive whole, a colon in the password too", () => {
  expect(brokerOptions("mqtts://agent:p%3Ass%3Aword@[::1]:8883/mqtt?x=1")).toEqual({
    protocol: "mqtts",
    host: "::1",
    port: 8883,
    path: "/mqtt?x=1",
    username: "agent",
    password: "p:ss:word",
  });
  expect(brokerOptions("mqtt://127.0.0.1")).toEqual({ protocol: "mqtt", host: "127.0.0.1", path: "/" });
});
