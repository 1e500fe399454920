/**
 * `npm run cli -- <command> …`: the batch command line. Each subcommand lives in its own module exporting
 * `register(program)`; add new ones to COMMANDS below.
 *
 * Errors: every failure is one line on stderr (`error [code]: what happened and what to do`); the stack
 * trace only with `--verbose`. Exit codes: 0 ok, 1 unexpected failure, 2 bad usage or input (the caller's
 * to fix), 3 some files failed (anonymize, submit: the summary lists them).
 */
import { Command, CommanderError } from 'commander';
import { BundleError } from '../../models/bundle/manifest.js';
import { InputError } from '../pipeline/types.js';
import { register as registerFaces } from './faces.js';
import { registerAnonymize } from './anonymize.js';
import { registerKeys } from './keys.js';
import { registerSubmit } from './submit.js';
import { CliError } from './errors.js';

const COMMANDS: Array<(program: Command) => void> = [
  registerFaces,
  registerAnonymize,
  registerSubmit,
  registerKeys,
];

const EXAMPLES = `
Examples:
  $ npm run cli -- anonymize photos/ --out anonymized/         # local, demo bundle built on first use
  $ npm run cli -- anonymize a.jpg b.png --out out --steps 100 --format png
  $ npm run cli -- faces group.jpg --out sheets/                 # what the detector sees
  $ npm run cli -- submit dataset/ --api http://localhost:8787 --key fk_…   # a folder through the API
  $ npm run cli -- keys create --tenant acme                      # API key on a deployed stack

Add --verbose to any command for stack traces. Each command has its own --help.`;

export function buildProgram(): Command {
  const program = new Command('falco')
    .description('FALCO face anonymization: batch tools')
    .option('--verbose', 'print stack traces of errors')
    // Commander's own usage errors become a thrown CommanderError (see main) instead of process.exit,
    // and print as one line with a pointer to the help; subcommands inherit both settings.
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) => write(`${s.trimEnd()} (see --help)\n`),
    })
    .addHelpText('after', EXAMPLES);
  for (const reg of COMMANDS) reg(program);
  return program;
}

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();

/** The one line printed for an error (plus the stack when verbose). */
export function formatError(err: unknown, verbose: boolean): string {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = e instanceof InputError || e instanceof CliError ? ` [${e.code}]` : '';
  const known = e instanceof InputError || e instanceof CliError || e instanceof BundleError;
  let line = `error${code}: ${oneLine(e.message || e.name)}`;
  if (!known && !verbose) line += ' (run again with --verbose for details)';
  if (!verbose) return `${line}\n`;
  const cause = e.cause instanceof Error ? `\ncaused by: ${e.cause.stack ?? e.cause.message}` : '';
  return `${line}\n${e.stack ?? ''}${cause}\n`;
}

/** Runs the CLI and returns the exit code (0 ok, 1 unexpected, 2 the caller's to fix). */
export async function main(argv = process.argv): Promise<number> {
  const verbose = argv.includes('--verbose');
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // Commander already printed its message (or the help/version, exit code 0).
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    process.stderr.write(formatError(err, verbose));
    return err instanceof InputError || err instanceof CliError || err instanceof BundleError ? 2 : 1;
  }
}

// Run only as the entry point, so tests can import buildProgram/formatError.
if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
