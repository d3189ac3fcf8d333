import { writeNewFilesAtomic } from "../../lib/fs/atomic-write.ts";
import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { newRecipientKeyPair } from "../backup/seal.ts";
import { keyPairPrefix } from "./_key-out.ts";

export default defineCommand({
  summary: "Make a key pair for backups: the public half encrypts (--recipient), the private half restores (--identity)",
  description: "Keep PREFIX.key off the gateway (it opens every backup made for PREFIX.pub); the gateway needs only PREFIX.pub.",
  flags: {
    out: { type: "string", description: "Writes PREFIX.pub (public) and PREFIX.key (private, mode 0600)", placeholder: "PREFIX" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    // "id.pub" and "id.key" mean the pair id.pub/id.key.
    const prefix = await keyPairPrefix(flags.out, [".pub", ".key"], ".key");
    const kp = newRecipientKeyPair();
    // Both or neither: a new .key beside an old .pub opens no backup.
    await writeNewFilesAtomic(
      [
        { path: `${prefix}.key`, data: kp.privatePem, mode: 0o600 },
        { path: `${prefix}.pub`, data: kp.publicPem },
      ],
      "key files are never overwritten",
    );
    out.result({ public: `${prefix}.pub`, private: `${prefix}.key` }, (r) => `wrote ${r.public} (give to gateway backup --recipient) and ${r.private} (keep offline)`);
  },
});
