import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
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
    // Check both first: a half-written pair (a new .key beside an old .pub) opens no backup.
    for (const path of [`${flags.out}.key`, `${flags.out}.pub`])
      if (await Bun.file(path).exists()) throw new Error(`Cannot write ${path}: it exists (key files are never overwritten)`);
    const kp = newRecipientKeyPair();
    await writeFileAtomic(`${flags.out}.key`, kp.privatePem, { mode: 0o600, noReplace: true });
    await writeFileAtomic(`${flags.out}.pub`, kp.publicPem, { noReplace: true });
    out.result({ public: `${flags.out}.pub`, private: `${flags.out}.key` }, (r) => `wrote ${r.public} (give to gateway backup --recipient) and ${r.private} (keep offline)`);
  },
});
