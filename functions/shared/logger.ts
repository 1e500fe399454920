/**
 * Structured JSON logs (Powertools). Privacy rule: log ids, sizes, codes and timings only — never API keys,
 * webhook secrets, presigned URLs, image bytes or face crops. Call sites pass explicit fields for that reason;
 * nothing here serialises whole requests.
 */
import { Logger } from '@aws-lambda-powertools/logger';

export type Log = Logger;

export function createLogger(serviceName: string, logLevel = process.env.LOG_LEVEL ?? 'INFO'): Logger {
  const level = (
    ['DEBUG', 'INFO', 'WARN', 'ERROR', 'SILENT', 'CRITICAL'].includes(logLevel.toUpperCase())
      ? logLevel.toUpperCase()
      : 'INFO'
  ) as 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'SILENT' | 'CRITICAL';
  return new Logger({ serviceName, logLevel: level });
}

/** Error fields safe to log: name, message and code; stack only at DEBUG. */
export function errFields(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    return {
      errorName: err.name,
      errorMessage: err.message.slice(0, 500),
      code: (err as { code?: unknown }).code,
    };
  }
  return { errorMessage: String(err).slice(0, 500) };
}
