import { Command } from 'commander';
import { Context, Io } from '../context';
import { reportedFailure, usageError } from '../exit-codes';
import { readArgument, readFileBytes } from '../input';
import { verifySignature, VerifyResult } from '../verify';

interface VerifyOptions {
  secret: string;
  file: string;
  signature?: string;
  webhookId?: string;
  timestamp?: string;
  webhookSignature?: string;
}

export function registerVerify(program: Command, io: Io): void {
  program
    .command('verify')
    .description('check offline that a received body was signed with a secret: exit 0 valid, 1 invalid')
    .requiredOption('--secret <secret>', 'the webhook secret (whsec_...), or @file')
    .requiredOption('--file <body>', 'the raw body exactly as received')
    .option('--signature <value>', "X-Bellwether-Signature ('sha256=<hex>'; or the X-Bellwether-Signature-Previous list)")
    .option('--webhook-id <id>', 'Standard Webhooks: the webhook-id header')
    .option('--timestamp <seconds>', 'Standard Webhooks: the webhook-timestamp header')
    .option('--webhook-signature <value>', "Standard Webhooks: the webhook-signature header ('v1,<base64>', space-separated)")
    .action((opts: VerifyOptions, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const secret = readArgument(opts.secret, '--secret').trim();
      const body = readFileBytes(opts.file, 'body file');
      const standard = [opts.webhookId, opts.timestamp, opts.webhookSignature];
      if (standard.some((v) => v !== undefined) && standard.some((v) => v === undefined)) {
        throw usageError('Standard Webhooks needs all three of --webhook-id, --timestamp and --webhook-signature');
      }
      if (opts.signature === undefined && opts.webhookSignature === undefined) {
        throw usageError('Give --signature, or --webhook-id with --timestamp and --webhook-signature');
      }
      const results: VerifyResult[] = [];
      if (opts.signature !== undefined) results.push(verifySignature({ scheme: 'bellwether', secret, body, signature: opts.signature }));
      if (opts.webhookSignature !== undefined) {
        results.push(verifySignature({ scheme: 'standard-webhooks', secret, body, webhookId: opts.webhookId!, timestamp: opts.timestamp!, signature: opts.webhookSignature }));
      }
      // Every signature given must hold: a check that passes on one header while the other was forged is no check.
      const valid = results.every((r) => r.valid);
      ctx.output({ valid, results }, () =>
        results.map((r) => {
          const name = r.scheme === 'bellwether' ? 'X-Bellwether-Signature' : 'webhook-signature';
          return r.valid ? `valid: ${name} matches (entry ${r.matched! + 1} of ${r.candidates})` : `INVALID: ${name}: ${r.reason}`;
        }),
      );
      if (!valid) throw reportedFailure();
    });
}
