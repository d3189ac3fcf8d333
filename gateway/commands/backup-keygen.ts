import { writeNewFilesAtomic } from "../../lib/fs/atomic-write.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { newRecipientKeyPair } from "../backup/seal.ts";

export default defineCommand({
  summary: "Make a key pair for backups: the public half encrypts (--recipient), the private half restores (--identity)",
  description: "Keep PREFIX.key off the gateway (it opens every backup made for PREFIX.pub); the gateway needs only PREFIX.pub.",
  flags: {
    out: { type: "string", description: "Writes PREFIX.pub (public) and PREFIX.key (private, mode 0600)", placeholder: "PREFIX" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.out) throw new UsageError("--out PREFIX is required");
    const kp = newRecipientKeyPair();
    // Both or neither: a new .key beside an old .pub opens no backup.
    await writeNewFilesAtomic(
      [
        { path: `${flags.out}.key`, data: kp.privatePem, mode: 0o600 },
        { path: `${flags.out}.pub`, data: kp.publicPem },
      ],
      "key files are never overwritten",
    );
    out.result({ public: `${flags.out}.pub`, private: `${flags.out}.key` }, (r) => `wrote ${r.public} (give to gateway backup --recipient) and ${r.private} (keep offline)`);
  },
});
