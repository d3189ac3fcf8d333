import { describe, expect, test } from "bun:test";
import { BackupUnreadableError, newRecipientKeyPair, seal, unseal, type OpenSecret, type SealSecret } from "./seal.ts";

async function* chunks(data: Uint8Array, size: number) {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}
const collect = async (it: AsyncIterable<Uint8Array>) => Buffer.concat(await Array.fromAsync(it, (c) => Buffer.from(c)));
const sealed = (data: Uint8Array, s: SealSecret, size = 65536) => collect(seal(chunks(data, size), s));
const opened = (file: Uint8Array, s: OpenSecret) => collect(unseal(chunks(file, 7777), s));

const data = crypto.getRandomValues(new Uint8Array(2.5 * 1048576 + 123)); // three records, the last one partial
const pass = { passphrase: "correct horse battery" };

describe("seal / unseal", () => {
  test("round trip with a passphrase, whatever the chunking; nothing readable in the file", async () => {
    const file = await sealed(data, pass, 1000);
    expect(Buffer.compare(await opened(file, pass), Buffer.from(data))).toBe(0);
    expect(file.indexOf(Buffer.from(data.subarray(0, 32)))).toBe(-1);
  });

  test("round trip for a recipient key; the passphrase path cannot open it", async () => {
    const kp = newRecipientKeyPair();
    const file = await sealed(data, { recipientPem: kp.publicPem });
    expect(Buffer.compare(await opened(file, { identityPem: kp.privatePem }), Buffer.from(data))).toBe(0);
    await expect(opened(file, pass)).rejects.toThrow(BackupUnreadableError);
    await expect(opened(file, { identityPem: newRecipientKeyPair().privatePem })).rejects.toThrow("wrong passphrase or key");
  });

  test("a private key is refused as the recipient (its public half would seal, but it must stay offline)", async () => {
    await expect(sealed(data, { recipientPem: newRecipientKeyPair().privatePem })).rejects.toThrow("Cannot use the recipient key: it is a private key");
  });

  test("an empty input still makes a file that opens to nothing", async () => {
    expect((await opened(await sealed(new Uint8Array(0), pass), pass)).length).toBe(0);
  });

  test("a wrong passphrase, a changed byte, a cut-short file and trailing data are refused", async () => {
    const file = await sealed(data, pass);
    await expect(opened(file, { passphrase: "wrong passphrase" })).rejects.toThrow("wrong passphrase or key");
    const flipped = Buffer.from(file);
    flipped[flipped.length - 5000]! ^= 1;
    await expect(opened(flipped, pass)).rejects.toThrow("changed or damaged");
    // Whole records dropped from the end: without the one marked last, it must not open.
    const header = file.indexOf(10) + 1;
    const firstRecord = header + 4 + 1048576 + 16;
    await expect(opened(file.subarray(0, firstRecord), pass)).rejects.toThrow("cut short");
    await expect(opened(file.subarray(0, file.length - 3), pass)).rejects.toThrow("cut short");
    await expect(opened(Buffer.concat([file, Buffer.from("x")]), pass)).rejects.toThrow("after its last record");
    await expect(opened(Buffer.from("hello\n"), pass)).rejects.toThrow("Not a gateway backup");
  });

  test("a file cut short inside its header line is a backup cut short, not another file", async () => {
    const file = await sealed(data, pass);
    expect(file.indexOf(10)).toBeGreaterThan(100); // `head -c 100` ends before the header's newline
    await expect(opened(file.subarray(0, 100), pass)).rejects.toThrow("The backup is cut short in its header");
    await expect(opened(file.subarray(0, "OTA-BACKUP 1 ".length), pass)).rejects.toThrow("cut short");
    // A few bytes that only begin like the header are not taken for one.
    await expect(opened(Buffer.from("OTA-BACK"), pass)).rejects.toThrow("Not a gateway backup");
  });
});
