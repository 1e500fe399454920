/** The CLI's own error type: a problem the caller can fix (usage, input, configuration), printed as one line. */
export class CliError extends Error {
  constructor(
    /** kebab-case slug, printed as `error [code]: …` */
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}
