import { expect, test } from "bun:test";
import { exitCodeOfStatus, judgeReportedService, judgeService } from "./service-verdict.ts";

test("a one-shot that exited 0 is ok, non-zero failed; created, removing and a starting healthcheck wait", () => {
  expect(judgeService({ name: "migrate", state: "exited", exitCode: 0 })).toEqual({ verdict: "ok" });
  expect(judgeService({ name: "migrate", state: "exited", exitCode: 2 })).toEqual({ verdict: "failed", reason: 'service "migrate" exited with code 2' });
  expect(judgeService({ name: "web", state: "removing" }).verdict).toBe("waiting");
  expect(judgeService({ name: "web", state: "created" }).verdict).toBe("waiting");
  expect(judgeService({ name: "web", state: "running", health: "starting" }).verdict).toBe("waiting");
  expect(judgeService({ name: "web", state: "running", health: "unhealthy" })).toEqual({ verdict: "failed", reason: 'service "web" is unhealthy' });
  expect(judgeService({ name: "web", state: "restarting", exitCode: 1 })).toEqual({ verdict: "failed", reason: 'service "web" is restarting (last exit code 1)' });
});

test("apps-states carry the exit code in docker's status text", () => {
  expect(exitCodeOfStatus("Exited (0) 2 seconds ago")).toBe(0);
  expect(exitCodeOfStatus("Exited (137) About a minute ago")).toBe(137);
  expect(exitCodeOfStatus("Up 3 seconds")).toBeUndefined();
  expect(judgeReportedService({ name: "migrate", state: "exited", status: "Exited (0) 2 seconds ago" }).verdict).toBe("ok");
  expect(judgeReportedService({ name: "migrate", state: "exited", status: "Exited (1) 2 seconds ago" }).verdict).toBe("failed");
  // An older report without the status text: the exit code is not known, so it is not taken as a success.
  expect(judgeReportedService({ name: "migrate", state: "exited" })).toEqual({ verdict: "failed", reason: 'service "migrate" exited (exit code not known)' });
});
