import { expect, test } from "bun:test";
import { MAX_DELTA_UNPACK_RATIO, maxRebuiltBytes, pickDeltaBase } from "./delta.ts";

const layer = (n: number, size: number) => ({ digest: `sha256:${String(n).repeat(64).slice(0, 64)}`, size });
const all = () => true;

test("pickDeltaBase takes the held layer at the same position, else the largest held one, never one under a fifth of the new layer", () => {
  const v1 = { layers: [layer(1, 1000), layer(2, 9_000_000)] };
  const v2 = { layers: [layer(1, 1000), layer(3, 10_000_000)] };
  const next = layer(4, 10_000_000);
  // Same position, most recent image first.
  expect(pickDeltaBase([v2, v1], 1, next, all)).toBe(layer(3, 0).digest);
  // Not held there: the largest held layer of those images.
  expect(pickDeltaBase([v2, v1], 1, next, (d) => d !== layer(3, 0).digest)).toBe(layer(2, 0).digest);
  // A base far smaller than the layer (a 1 KB layer for a 10 MB one) is none: the gateway would refuse its delta.
  expect(pickDeltaBase([{ layers: [layer(1, 1000)] }], 0, next, all)).toBeUndefined();
  expect(pickDeltaBase([{ layers: [layer(1, 1_999_999), layer(2, 2_000_000)] }], 0, next, all)).toBe(layer(2, 0).digest);
  // The layer itself is no base.
  expect(pickDeltaBase([{ layers: [next] }], 0, next, all)).toBeUndefined();
});

test("maxRebuiltBytes is what the signed target says the layer unpacks to, never what a delta descriptor claims", () => {
  const gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
  // Recorded by publish in the target: that size exactly.
  expect(maxRebuiltBytes({ size: 1000, mediaType: gzip, unpackedSize: 2500 })).toBe(2500);
  // An uncompressed layer is its blob.
  expect(maxRebuiltBytes({ size: 1000, mediaType: "application/vnd.oci.image.layer.v1.tar" })).toBe(1000);
  // Compressed (or of an unknown type), not recorded: a bounded multiple of its blob.
  expect(maxRebuiltBytes({ size: 1000, mediaType: gzip })).toBe(1000 * MAX_DELTA_UNPACK_RATIO);
  expect(maxRebuiltBytes({ size: 1000 })).toBe(1000 * MAX_DELTA_UNPACK_RATIO);
});
