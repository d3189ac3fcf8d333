import { writeNewFilesAtomic } from "../../lib/fs/atomic-write.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { whyCannotWrite } from "../../lib/fs/paths.ts";
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
    // "id.pub" means the pair id.pub/id.key, not id.pub.pub/id.pub.key.
    const prefix = flags.out.replace(/\.(pub|key)$/, "");
    // The folder must be there: a mistyped path would otherwise be created and hold a private key nobody finds.
    const why = await whyCannotWrite(`${prefix}.key`);
    if (why) throw new UsageError(`--out ${flags.out}: ${why}`);
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
