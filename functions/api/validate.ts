/**
 * Upload validation, API side: size → magic bytes → header dimensions (pixel limit, refused before any pixel
 * is decoded) → a real decode. The header is read by sharp's metadata(), which parses only the header. The
 * image-io module of the pipeline may take this over later; the error contract (status + slug) stays.
 */
import sharp from 'sharp';
import { ProblemError } from '../shared/problem.js';
import type { OutputFormat } from '../pipeline/types.js';

export interface ValidatedImage {
  format: OutputFormat;
  width: number;
  height: number;
  bytes: number;
}

/** What the first bytes say the file is. Only jpeg/png/webp are accepted; the rest names the culprit. */
export function sniff(b: Uint8Array): OutputFormat | { other: string } {
  const ascii = (from: number, to: number) => Buffer.from(b.subarray(from, to)).toString('latin1');
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && ascii(0, 8) === '\x89PNG\r\n\x1a\n') return 'png';
  if (b.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (b.length >= 6 && (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a')) return { other: 'GIF' };
  if (b.length >= 2 && ascii(0, 2) === 'BM') return { other: 'BMP' };
  if (b.length >= 4 && (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*')) return { other: 'TIFF' };
  if (b.length >= 12 && ascii(4, 8) === 'ftyp')
    return { other: `ISO-BMFF (${ascii(8, 12).trim()}: HEIC/AVIF/MP4)` };
  if (b.length >= 5 && ascii(0, 5) === '%PDF-') return { other: 'PDF' };
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 3 && b[3] === 4) return { other: 'ZIP' };
  const head = b.subarray(0, 512);
  if (
    head.length > 0 &&
    head.every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127) || c >= 128)
  ) {
    if (/^\s*<(\?xml|svg)/i.test(Buffer.from(head).toString('utf8'))) return { other: 'SVG/XML text' };
    return { other: 'text' };
  }
  return { other: 'unknown binary data' };
}

const mp = (px: number) => `${(px / 1e6).toFixed(1)} MP`;

export async function validateImage(
  bytes: Uint8Array,
  limits: { maxBytes: number; maxPixels: number },
  label: string,
): Promise<ValidatedImage> {
  if (bytes.length === 0) throw new ProblemError(422, 'empty-image', `${label} is empty (0 bytes)`);
  if (bytes.length > limits.maxBytes) {
    throw new ProblemError(
      413,
      'image-too-large',
      `${label} is ${bytes.length} bytes; the limit is ${limits.maxBytes} bytes`,
    );
  }
  const kind = sniff(bytes);
  if (typeof kind !== 'string') {
    throw new ProblemError(
      415,
      'unsupported-image-type',
      `${label} looks like ${kind.other}; only JPEG, PNG and WebP are accepted (detected from the file content)`,
    );
  }
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>['metadata']>>;
  try {
    meta = await sharp(bytes).metadata();
  } catch (err) {
    throw new ProblemError(
      422,
      'corrupt-image',
      `${label}: the ${kind.toUpperCase()} header cannot be read (${(err as Error).message})`,
    );
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (!width || !height)
    throw new ProblemError(
      422,
      'corrupt-image',
      `${label}: the ${kind.toUpperCase()} header has no dimensions`,
    );
  if (width * height > limits.maxPixels) {
    throw new ProblemError(
      422,
      'too-many-pixels',
      `${label}: ${width}×${height} = ${mp(width * height)} exceeds the ${mp(limits.maxPixels)} limit`,
    );
  }
  if (meta.format && meta.format !== kind) {
    throw new ProblemError(
      422,
      'corrupt-image',
      `${label}: content starts like ${kind.toUpperCase()} but decodes as ${meta.format}`,
    );
  }
  try {
    // Full decode (shrink-on-load keeps memory small); failOn 'error' rejects truncated or corrupt data.
    await sharp(bytes, { failOn: 'error', limitInputPixels: limits.maxPixels, sequentialRead: true })
      .resize(64, 64, { fit: 'inside' })
      .raw()
      .toBuffer();
  } catch (err) {
    throw new ProblemError(
      422,
      'corrupt-image',
      `${label}: the ${kind.toUpperCase()} data does not decode (${(err as Error).message.replace(/^Vips\w*: /, '')})`,
    );
  }
  return { format: kind, width, height, bytes: bytes.length };
}
