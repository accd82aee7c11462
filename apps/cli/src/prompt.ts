import { createInterface } from 'node:readline';
import { CliError, ExitCode } from './exit-codes';

type Input = NodeJS.ReadStream;
type Output = NodeJS.WritableStream;

/** One visible line from the terminal. */
export function promptLine(question: string, input: Input, output: Output): Promise<string> {
  const rl = createInterface({ input, output, terminal: true });
  return new Promise((resolve) => rl.question(question, (answer) => (rl.close(), resolve(answer.trim()))));
}

/** A password from the terminal, not echoed: raw mode, so nothing typed is shown or kept in a history. */
export function promptHidden(question: string, input: Input, output: Output): Promise<string> {
  output.write(question);
  input.setRawMode(true);
  input.resume();
  input.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    const done = (error?: CliError) => {
      input.setRawMode(false);
      input.pause();
      input.removeListener('data', onData);
      output.write('\n');
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n' || char === '\u0004') return done();
        if (char === '\u0003') return done(new CliError('Interrupted', ExitCode.usage));
        if (char === '\u007f' || char === '\b') value = value.slice(0, -1);
        else value += char;
      }
    };
    input.on('data', onData);
  });
}

/** The first line of standard input (`--password-stdin`), for scripts that must not put a password on the command line. */
export async function readFirstLine(input: Input): Promise<string> {
  let text = '';
  for await (const chunk of input) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  return text.split('\n')[0].replace(/\r$/, '');
}
