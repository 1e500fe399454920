/** One HTTP delivery attempt, through the SSRF guard, without following redirects. */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { guardedLookup, refusalReason, SsrfError } from './ssrf.js';

export interface DeliveryResult {
  ok: boolean;
  status?: number;
  /** Short reason for logs and the job's webhookLastError (never the response body: it is the customer's data). */
  error?: string;
  /** Refused by policy: retrying cannot help. */
  permanent?: boolean;
}

export function deliver(
  rawUrl: string,
  body: string,
  headers: Record<string, string>,
  opts: { allowLoopback: boolean; timeoutMs: number },
): Promise<DeliveryResult> {
  return new Promise((resolve) => {
    let url: URL;
    try {
      url = new URL(rawUrl);
    } catch {
      return resolve({ ok: false, error: 'invalid URL', permanent: true });
    }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host)) {
      // Literal addresses never reach `lookup`, so check them here.
      const why = refusalReason(host, opts.allowLoopback);
      if (why) return resolve({ ok: false, error: `refused: ${why}`, permanent: true });
    }
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          'user-agent': 'falco-webhooks/1',
          ...headers,
        },
        lookup: guardedLookup(opts.allowLoopback) as never,
        // A total deadline (DNS, connect, upload, headers), not an idle timeout: a slow endpoint that trickles
        // bytes cannot hold the batch past the function's own timeout.
        signal: AbortSignal.timeout(opts.timeoutMs),
        agent: false,
      },
      (res) => {
        res.resume(); // drain; the body is not needed
        const status = res.statusCode ?? 0;
        resolve(
          status >= 200 && status < 300
            ? { ok: true, status }
            : { ok: false, status, error: `HTTP ${status}` },
        );
      },
    );
    req.on('error', (err) => {
      if (err.name === 'AbortError' || err.name === 'TimeoutError')
        return resolve({ ok: false, error: `timed out after ${opts.timeoutMs} ms` });
      const refused = err instanceof SsrfError || (err as { cause?: unknown }).cause instanceof SsrfError;
      resolve({
        ok: false,
        error: refused ? `refused: ${err.message}` : err.message.slice(0, 200),
        permanent: refused,
      });
    });
    req.end(body);
  });
}
