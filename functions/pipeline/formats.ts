/**
 * The one image-format table and the one content sniffer of the code base (API validation, the pipeline, the
 * worker, completion and the CLI all read these). We accept JPEG, PNG and WebP only and decide the format from
 * the bytes, never from a file name or a declared content type.
 */
import type { OutputFormat } from './types.js';

export type { OutputFormat };

export interface FormatInfo {
  /** Name used in customer-facing messages. */
  label: string;
  contentType: string;
  /** Extension of result keys and CLI outputs (no dot). */
  extension: string;
  /** Every extension the CLI picks up as this format. */
  extensions: readonly string[];
}

export const FORMATS: Readonly<Record<OutputFormat, FormatInfo>> = Object.freeze({
  jpeg: { label: 'JPEG', contentType: 'image/jpeg', extension: 'jpg', extensions: ['jpg', 'jpeg'] },
  png: { label: 'PNG', contentType: 'image/png', extension: 'png', extensions: ['png'] },
  webp: { label: 'WebP', contentType: 'image/webp', extension: 'webp', extensions: ['webp'] },
});

/** The same table as literal tuples, for schemas that need the literal types (zod enums). */
export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp'] as const satisfies readonly OutputFormat[];
export const CONTENT_TYPE_LIST = ['image/jpeg', 'image/png', 'image/webp'] as const;

export function formatOfContentType(contentType: string): OutputFormat | null {
  return OUTPUT_FORMATS.find((f) => FORMATS[f].contentType === contentType) ?? null;
}

export function formatOfExtension(ext: string): OutputFormat | null {
  const e = ext.replace(/^\./, '').toLowerCase();
  return OUTPUT_FORMATS.find((f) => FORMATS[f].extensions.includes(e)) ?? null;
}

export interface Sniffed {
  /** The accepted format, or null when the content is anything else. */
  format: OutputFormat | null;
  /** What the content looks like, for messages ("GIF", "PDF", "text", …). */
  guess: string;
}

const latin1 = (b: Uint8Array, from: number, to: number) =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1', from, Math.min(to, b.length));

/**
 * Identifies JPEG, PNG and WebP from their signatures and names a few formats we refuse, so the error can say
 * what was sent. Sniffing ourselves (instead of letting libvips guess) keeps SVG, PDF, TIFF, HEIF, GIF and text
 * away from loaders we never meant to expose: libvips would rasterise an SVG, a classic server-side attack surface.
 */
export function sniff(b: Uint8Array): Sniffed {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff)
    return { format: 'jpeg', guess: 'JPEG' };
  if (b.length >= 8 && latin1(b, 0, 8) === '\x89PNG\r\n\x1a\n') return { format: 'png', guess: 'PNG' };
  if (b.length >= 12 && latin1(b, 0, 4) === 'RIFF' && latin1(b, 8, 12) === 'WEBP')
    return { format: 'webp', guess: 'WebP' };
  if (b.length >= 6 && (latin1(b, 0, 6) === 'GIF87a' || latin1(b, 0, 6) === 'GIF89a'))
    return { format: null, guess: 'GIF' };
  if (b.length >= 4 && (latin1(b, 0, 4) === 'II*\0' || latin1(b, 0, 4) === 'MM\0*'))
    return { format: null, guess: 'TIFF' };
  if (b.length >= 12 && latin1(b, 4, 8) === 'ftyp')
    return {
      format: null,
      guess: `ISO-BMFF (${latin1(b, 8, 12)
        .replace(/[^\x20-\x7e]/g, '?')
        .trim()}: HEIC/AVIF/MP4)`,
    };
  if (b.length >= 5 && latin1(b, 0, 5) === '%PDF-') return { format: null, guess: 'PDF' };
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 3 && b[3] === 4)
    return { format: null, guess: 'ZIP' };
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return { format: null, guess: 'BMP' };
  const head = b.subarray(0, 512);
  if (
    head.length > 0 &&
    head.every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127) || c >= 128)
  ) {
    if (/^\s*<(\?xml|svg)/i.test(Buffer.from(head).toString('utf8')))
      return { format: null, guess: 'SVG/XML text' };
    return { format: null, guess: 'text' };
  }
  return { format: null, guess: 'unknown binary data' };
}

/**
 * Whether the file's container ends where it says it does. Used only to word a decode failure ("truncated" vs
 * "corrupt") from this request's own bytes: libvips' error text is process-global and can carry another
 * request's message, so it never decides what we tell a customer.
 */
export function looksTruncated(b: Uint8Array, format: OutputFormat): boolean {
  switch (format) {
    case 'jpeg': {
      let end = b.length;
      while (end > 2 && b[end - 1] === 0) end--; // zero padding after EOI is common and harmless
      return !(end >= 4 && b[end - 2] === 0xff && b[end - 1] === 0xd9);
    }
    case 'png': {
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let at = 8; ;) {
        if (at + 12 > b.length) return true;
        const len = v.getUint32(at);
        const type = latin1(b, at + 4, at + 8);
        if (at + 12 + len > b.length) return true;
        if (type === 'IEND') return false;
        at += 12 + len;
      }
    }
    case 'webp': {
      if (b.length < 12) return true;
      const size = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(4, true);
      return size + 8 > b.length;
    }
  }
}
