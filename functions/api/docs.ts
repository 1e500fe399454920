/**
 * API reference pages. /docs is rendered here from the generated OpenAPI document and needs no network;
 * /docs/scalar is the interactive Scalar UI, which loads its script from a CDN (jsdelivr) — fine on the
 * internet, blank when offline, hence the self-contained default.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { Scalar } from '@scalar/hono-api-reference';
import type { ApiEnv } from './auth.js';

const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

type Doc = {
  info: { title: string; version: string; description?: string };
  paths: Record<string, Record<string, Record<string, unknown>>>;
};

export function renderReference(doc: Doc): string {
  const ops: string[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const responses = Object.entries((op.responses ?? {}) as Record<string, { description?: string }>)
        .map(([code, r]) => `<li><code>${esc(code)}</code> ${esc(r.description)}</li>`)
        .join('');
      ops.push(`<section class="op"><h2><span class="m ${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code></h2>
<p><strong>${esc(op.summary)}</strong></p><p>${esc(op.description)}</p>
${op.parameters ? `<details><summary>Parameters</summary><pre>${esc(JSON.stringify(op.parameters, null, 2))}</pre></details>` : ''}
${op.requestBody ? `<details><summary>Request body</summary><pre>${esc(JSON.stringify(op.requestBody, null, 2))}</pre></details>` : ''}
<ul>${responses}</ul></section>`);
    }
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(doc.info.title)} — API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font-family:ui-monospace,monospace}pre{background:#f5f5f5;padding:.75rem;overflow:auto;font-size:12px}
.op{border-top:1px solid #ddd;padding:.5rem 0}.m{display:inline-block;min-width:4.5rem;text-align:center;border-radius:4px;color:#fff;font-size:13px;padding:2px 6px}
.get{background:#2b7a3d}.post{background:#1f5fa8}.delete{background:#a83232}</style></head>
<body><h1>${esc(doc.info.title)} <small>${esc(doc.info.version)}</small></h1><p>${esc(doc.info.description)}</p>
<p>Raw document: <a href="/openapi.json">/openapi.json</a> · Interactive (loads Scalar from a CDN): <a href="/docs/scalar">/docs/scalar</a></p>
${ops.join('\n')}
<details><summary>Full OpenAPI document</summary><pre>${esc(JSON.stringify(doc, null, 2))}</pre></details></body></html>`;
}

export function registerDocs(app: OpenAPIHono<ApiEnv>, getDoc: () => Doc): void {
  let html: string | undefined;
  app.get('/docs', (c) => c.html((html ??= renderReference(getDoc()))));
  app.get('/docs/scalar', Scalar({ url: '/openapi.json', pageTitle: 'FALCO anonymization API' }));
}
