/**
 * `npm run cli -- <command> …`: the batch command line. Each subcommand lives in its own module exporting
 * `register(program)`; add new ones (e.g. `anonymize`) to COMMANDS below.
 */
import { Command } from 'commander';
import { InputError } from '../pipeline/types.js';
import { register as registerFaces } from './faces.js';
import { registerAnonymize } from './anonymize.js';
import { registerKeys } from './keys.js';

const COMMANDS: Array<(program: Command) => void> = [registerFaces, registerAnonymize, registerKeys];

export function buildProgram(): Command {
  const program = new Command('falco')
    .description('FALCO face anonymization: batch tools')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const reg of COMMANDS) reg(program);
  return program;
}

/** Runs the CLI; customer-fixable problems (InputError) print one line and exit 2, anything else exits 1. */
export async function main(argv = process.argv): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof InputError) {
      process.stderr.write(`error [${err.code}]: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main();
