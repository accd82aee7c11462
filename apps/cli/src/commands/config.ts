import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
// The settings table itself, not the package's index: that one loads Nest (see imports.spec.ts).
import { ConfigFileFormat, renderConfigFile } from '../../../../libs/config/src/settings';
import { Context, Io } from '../context';
import { CliError, ExitCode } from '../exit-codes';

interface InitOptions {
  format: ConfigFileFormat;
  output?: string;
  force?: boolean;
}

export function registerConfig(program: Command, io: Io): void {
  const config = program.command('config').description("the server's config file (BELLHOP_CONFIG, or --config on the start commands)");

  config
    .command('init')
    .description('write a config file with every setting, its default and its meaning (YAML; JSON has no comments)')
    .addOption(new Option('--format <format>', 'yaml or json').choices(['yaml', 'json']).default('yaml'))
    .option('--output <file>', 'where to write it, or - for standard output (default: bellhop.yaml or bellhop.json here)')
    .option('--force', 'replace the file if it exists')
    .action((opts: InitOptions, cmd: Command) => {
      const ctx = Context.of(cmd, io);
      const { text, omitted } = renderConfigFile(opts.format);
      if (opts.output === '-') {
        io.stdout.write(text);
        return;
      }
      const file = resolve(opts.output ?? `bellhop.${opts.format}`);
      try {
        // 0600: the file is meant to receive secrets (JWT_SECRET, SECRETS_KEY, database passwords).
        writeFileSync(file, text, { flag: opts.force ? 'w' : 'wx', mode: 0o600 });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw new CliError(`${file} exists: pass --force to replace it`, ExitCode.failure);
        throw new CliError(`cannot write ${file}: ${(err as Error).message}`, ExitCode.failure);
      }
      ctx.output({ file, format: opts.format, omitted: opts.format === 'json' ? omitted : [] }, () => {
        const lines = [`Wrote ${file}.`];
        if (opts.format === 'json') {
          lines.push(
            'JSON has no comments: the file is a plain object of the settings with a fixed default, and their meanings are in',
            '`bellhop config init` (YAML) and the README. Left out, as their defaults follow from other settings or there is',
            `none: ${omitted.join(', ')}.`,
          );
        } else {
          lines.push('Every setting is in it, commented out with its default and meaning: uncomment the ones you change.');
        }
        lines.push(`Start with BELLHOP_CONFIG=${file} (or --config ${file}); flags and environment variables are over the file.`);
        return lines;
      });
    });
}
