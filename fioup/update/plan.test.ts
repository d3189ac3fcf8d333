import { describe, expect, test } from "bun:test";
import type { UpdateRow } from "../db.ts";
import { newPlan, PLAN_FORMAT, PlanFormatError, planOf } from "./plan.ts";

const resolved = {
  apps: [{ name: "httpd", uri: "hub.example/factory/httpd@sha256:" + "a".repeat(64), images: [] }],
  blobs: [{ digest: "sha256:" + "b".repeat(64), size: 10, kind: "layer" as const, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", registry: "hub.example", repo: "factory/httpd" }],
  resolveBytes: 0,
};
const row = (plan: unknown) => ({ id: "01TEST", plan }) as UpdateRow;

describe("planOf", () => {
  test("reads a plan saved by this fioup", () => {
    const saved = JSON.parse(JSON.stringify(newPlan(resolved)));
    expect(planOf(row(saved))).toEqual({ format: PLAN_FORMAT, ...resolved });
  });

  test("reads a plan saved before plans had a format number as format 1", () => {
    expect(planOf(row(JSON.parse(JSON.stringify(resolved)))).apps[0]!.name).toBe("httpd");
  });

  test("refuses a plan of another format, naming both formats and the way out", () => {
    expect(() => planOf(row({ ...resolved, format: 2 }))).toThrow(PlanFormatError);
    expect(() => planOf(row({ ...resolved, format: 2 }))).toThrow(/format 2 .*reads format 1.*fioup cancel/);
  });

  test("refuses a damaged plan and a missing one", () => {
    expect(() => planOf(row({ ...resolved, blobs: [{ digest: 1 }] }))).toThrow(/damaged \(blobs\[0\]\./);
    expect(() => planOf(row(null))).toThrow(/no saved plan/);
  });
});
