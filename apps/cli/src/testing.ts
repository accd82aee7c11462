import { Readable } from 'node:stream';
import { run } from './cli';
import type { Io } from './context';

/**
 * Runs the program in this process, as tests do, with captured output, an empty stdin and an
 * environment of its own (nothing of the test process's leaks in).
 */
export async function runCaptured(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    stdout: { write: (text: string) => ((stdout += text), true) } as unknown as Io['stdout'],
    stderr: { write: (text: string) => ((stderr += text), true) } as unknown as Io['stderr'],
    stdin: Readable.from([]) as unknown as Io['stdin'],
    env,
  };
  const code = await run(args, io, '1.2.3');
  return { code, stdout, stderr };
}
