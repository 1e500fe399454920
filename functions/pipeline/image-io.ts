/**
 * Image decoding and encoding for customer photos (sharp / libvips).
 *
 * Order of checks on decode, cheapest and safest first, so that hostile inputs never reach a decoder:
 *  1. byte length (0 bytes → `empty`, above `maxBytes` → `too_large`);
 *  2. magic bytes: only JPEG, PNG and WebP are accepted. Sniffing ourselves (instead of letting libvips guess)
 *     keeps SVG, PDF, TIFF, HEIF, GIF and plain text away from loaders we never meant to expose: libvips would
 *     happily rasterise an SVG, which is a classic server-side attack surface;
 *  3. header-only metadata (no pixel decoding): width × height above `maxPixels`, or one side above
 *     `maxDimension`, → `too_many_pixels`. This is what refuses decompression bombs (a 20000×20000 PNG that is a
 *     few hundred bytes on the wire) before any memory is allocated for pixels. sharp's own `limitInputPixels` is
 *     set to the same limit as a second line of defence inside libvips;
 *  4. full decode with `failOn: 'error'`: truncated or corrupt pixel data → `truncated` / `corrupt`
 *     (libvips' benign warnings, common in phone JPEGs, are tolerated; real decode errors are not).
 *
 * Colour policy (ICC): pixels are converted to sRGB on decode (libvips applies the embedded profile, e.g.
 * Display P3 from phones) and every output is written as untagged sRGB, i.e. the profile is dropped.
 * Why: the detector, recognizer and generator were all trained on sRGB pixels, untagged images are shown as sRGB
 * by every viewer, and an embedded profile is itself metadata that can identify the capture device or editing
 * software. The cost is that wide-gamut colours outside sRGB are clipped; for a privacy product that is the
 * right trade.
 *
 * Metadata policy: outputs carry no EXIF (so no GPS, camera serial, timestamps), no XMP, no IPTC and no ICC.
 * sharp writes none of them unless asked (`keepMetadata`/`withExif`/...); we never ask, and tests parse the
 * output to prove it. EXIF orientation is applied to the pixels on decode, so dropping the tag is lossless.
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { InputError, type OutputFormat } from './types.js';

export type ImageFormat = OutputFormat;

/** Interleaved 8-bit RGB pixels, row-major, top-left origin, already in display orientation. */
export interface RgbImage {
  width: number;
  height: number;
  /** length width*height*3 */
  data: Uint8Array;
  /**
   * Optional straight (non-premultiplied) alpha, length width*height. Kept apart from the RGB planes because
   * every model works on RGB; it is re-attached unchanged on encode so transparency survives the round trip.
   */
  alpha?: Uint8Array;
}

export interface ImageLimits {
  /** Largest accepted input, in bytes. */
  maxBytes: number;
  /** Largest accepted width*height, read from the header before decoding. */
  maxPixels: number;
  /** Largest accepted single side (guards very thin images whose pixel count is small). */
  maxDimension: number;
}

/** 30 MB and 50 MP: above any phone or DSLR photo we expect, far below what would exhaust a worker's memory. */
export const DEFAULT_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxBytes: 30 * 1024 * 1024,
  maxPixels: 50_000_000,
  maxDimension: 16_384,
});

export interface ProbeResult {
  format: ImageFormat;
  /** Display size (after EXIF orientation). */
  width: number;
  height: number;
  /** EXIF orientation tag 1..8 (1 when absent). */
  orientation: number;
  hasAlpha: boolean;
  /** Which metadata blocks the input carries (reported, never copied to outputs). */
  metadata: { exif: boolean; xmp: boolean; iptc: boolean; icc: boolean };
}

export interface DecodedImage extends ProbeResult {
  image: RgbImage;
}

export interface EncodeOptions {
  /** JPEG/WebP quality 1..100 (default 92: visually lossless for faces, unlike sharp's default 80). */
  quality?: number;
  /**
   * WebP only: lossless encoding. PNG is always lossless. With a lossless format every pixel that the pipeline
   * did not touch decodes to exactly the input's decoded value; JPEG (and lossy WebP) re-encoding changes
   * pixels everywhere by small amounts, which is inherent to lossy compression.
   */
  lossless?: boolean;
}

const CONTENT_TYPES: Record<ImageFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
};

export function contentTypeOf(format: ImageFormat): string {
  return CONTENT_TYPES[format];
}

/**
 * Identifies JPEG, PNG and WebP from their signatures. Returns null for anything else. Also names a few common
 * formats we refuse, so the error message can say what was sent.
 */
export function sniffFormat(bytes: Uint8Array): ImageFormat | null {
  return sniff(bytes).format;
}

function sniff(bytes: Uint8Array): { format: ImageFormat | null; guess: string } {
  const b = bytes;
  const ascii = (start: number, end: number): string => String.fromCharCode(...b.subarray(start, end));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff)
    return { format: 'jpeg', guess: 'JPEG' };
  if (
    b.length >= 8 &&
    b[0] === 0x89 &&
    ascii(1, 4) === 'PNG' &&
    b[4] === 0x0d &&
    b[5] === 0x0a &&
    b[6] === 0x1a &&
    b[7] === 0x0a
  ) {
    return { format: 'png', guess: 'PNG' };
  }
  if (b.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP')
    return { format: 'webp', guess: 'WebP' };
  if (b.length >= 6 && (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a'))
    return { format: null, guess: 'GIF' };
  if (b.length >= 4 && (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*'))
    return { format: null, guess: 'TIFF' };
  if (b.length >= 12 && ascii(4, 8) === 'ftyp') return { format: null, guess: 'HEIF/AVIF' };
  if (b.length >= 4 && ascii(0, 4) === '%PDF') return { format: null, guess: 'PDF' };
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return { format: null, guess: 'BMP' };
  const head = ascii(0, Math.min(b.length, 256)).trimStart().toLowerCase();
  if (head.startsWith('<svg') || head.startsWith('<?xml')) return { format: null, guess: 'SVG/XML' };
  const printable = b
    .subarray(0, Math.min(b.length, 512))
    .every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127));
  return { format: null, guess: printable ? 'text' : 'unknown binary data' };
}

function limitsOf(partial?: Partial<ImageLimits>): ImageLimits {
  const l = { ...DEFAULT_LIMITS, ...partial };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isFinite(v) || v <= 0)
      throw new RangeError(`image limit ${k} must be a positive number, got ${v}`);
  }
  return l;
}

/** Maps libvips/sharp failures to typed input errors; anything unrecognised stays a generic `corrupt`. */
function decodeError(err: unknown, format: ImageFormat): InputError {
  const msg = err instanceof Error ? err.message : String(err);
  if (/premature end|truncat|unexpected end|short read|not enough data|end of (file|stream)/i.test(msg)) {
    return new InputError('truncated', `The ${format.toUpperCase()} file is truncated (${msg}).`);
  }
  if (/pixel limit/i.test(msg)) {
    return new InputError('too_many_pixels', `The image has more pixels than allowed (${msg}).`);
  }
  return new InputError('corrupt', `The ${format.toUpperCase()} file could not be decoded (${msg}).`);
}

/** Header checks only (size, signature, dimensions); decodes no pixels. */
export async function probeImage(bytes: Uint8Array, limits?: Partial<ImageLimits>): Promise<ProbeResult> {
  const lim = limitsOf(limits);
  if (!(bytes instanceof Uint8Array))
    throw new InputError('invalid_input', 'The image must be given as bytes.');
  if (bytes.length === 0) throw new InputError('empty', 'The image is empty (0 bytes).');
  if (bytes.length > lim.maxBytes) {
    throw new InputError(
      'too_large',
      `The image is ${bytes.length} bytes; the limit is ${lim.maxBytes} bytes.`,
    );
  }
  const { format, guess } = sniff(bytes);
  if (format === null) {
    throw new InputError(
      'unsupported_format',
      `Unsupported image format (${guess}); send JPEG, PNG or WebP.`,
    );
  }
  let meta: Metadata;
  try {
    // limitInputPixels:false here so that we, not libvips, produce the size error with the real numbers;
    // metadata() reads headers only, so an oversized header costs nothing.
    meta = await sharp(bytes, { limitInputPixels: false, failOn: 'error' }).metadata();
  } catch (err) {
    throw decodeError(err, format);
  }
  if (meta.format !== format) {
    // The signature said one thing and libvips parsed another: refuse rather than guess.
    throw new InputError(
      'corrupt',
      `The file looks like ${format.toUpperCase()} but could not be read as one.`,
    );
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (!(w > 0 && h > 0))
    throw new InputError('corrupt', `The ${format.toUpperCase()} header has no valid size.`);
  if (w * h > lim.maxPixels || w > lim.maxDimension || h > lim.maxDimension) {
    throw new InputError(
      'too_many_pixels',
      `The image is ${w}×${h} (${((w * h) / 1e6).toFixed(1)} MP); the limits are ${(lim.maxPixels / 1e6).toFixed(1)} MP ` +
        `and ${lim.maxDimension} px per side.`,
    );
  }
  const orientation =
    meta.orientation && meta.orientation >= 1 && meta.orientation <= 8 ? meta.orientation : 1;
  const swap = orientation >= 5;
  return {
    format,
    width: swap ? h : w,
    height: swap ? w : h,
    orientation,
    hasAlpha: meta.hasAlpha === true,
    metadata: { exif: !!meta.exif, xmp: !!meta.xmp, iptc: !!meta.iptc, icc: !!meta.icc },
  };
}

/**
 * Decodes to 8-bit sRGB in display orientation (EXIF orientation applied). Animated WebP/PNG: first frame only.
 * Throws InputError for every customer-fixable problem.
 */
export async function decodeImage(bytes: Uint8Array, limits?: Partial<ImageLimits>): Promise<DecodedImage> {
  const lim = limitsOf(limits);
  const probe = await probeImage(bytes, lim);
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await sharp(bytes, { limitInputPixels: lim.maxPixels, failOn: 'error', autoOrient: true })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(err, probe.format);
  }
  const { width, height, channels } = raw.info;
  if (width !== probe.width || height !== probe.height) {
    throw new InputError(
      'corrupt',
      `Decoded size ${width}×${height} does not match the header (${probe.width}×${probe.height}).`,
    );
  }
  const n = width * height;
  const src = raw.data;
  const data = new Uint8Array(n * 3);
  let alpha: Uint8Array | undefined;
  if (channels === 3) {
    data.set(src.subarray(0, n * 3));
  } else if (channels === 4) {
    alpha = new Uint8Array(n);
    let opaque = true;
    for (let i = 0; i < n; i++) {
      data[i * 3] = src[i * 4];
      data[i * 3 + 1] = src[i * 4 + 1];
      data[i * 3 + 2] = src[i * 4 + 2];
      const a = src[i * 4 + 3];
      alpha[i] = a;
      if (a !== 255) opaque = false;
    }
    // A fully opaque alpha channel carries no information; dropping it keeps JPEG/WebP outputs simple.
    if (opaque) alpha = undefined;
  } else {
    throw new InputError(
      'unsupported_format',
      `Unsupported channel layout (${channels} channels after sRGB conversion).`,
    );
  }
  return { ...probe, image: { width, height, data, ...(alpha ? { alpha } : {}) } };
}

/**
 * Encodes RGB (+ optional alpha) with no metadata at all: no EXIF/GPS, XMP, IPTC or ICC (see file comment).
 * JPEG has no alpha: transparent pixels are flattened onto white, the usual expectation for photos.
 */
export async function encodeImage(
  img: RgbImage,
  format: ImageFormat,
  options: EncodeOptions = {},
): Promise<Buffer> {
  assertRgbImage(img);
  const quality = options.quality ?? 92;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new RangeError(`quality must be an integer in 1..100, got ${quality}`);
  }
  const n = img.width * img.height;
  let pixels: Uint8Array = img.data;
  let channels: 3 | 4 = 3;
  if (img.alpha) {
    pixels = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      pixels[i * 4] = img.data[i * 3];
      pixels[i * 4 + 1] = img.data[i * 3 + 1];
      pixels[i * 4 + 2] = img.data[i * 3 + 2];
      pixels[i * 4 + 3] = img.alpha[i];
    }
    channels = 4;
  }
  // No keepMetadata()/withExif()/withIccProfile(): sharp then writes no metadata blocks at all.
  let pipe = sharp(pixels, { raw: { width: img.width, height: img.height, channels } });
  switch (format) {
    case 'jpeg':
      if (channels === 4) pipe = pipe.flatten({ background: '#ffffff' });
      return pipe
        .jpeg({ quality, mozjpeg: false, chromaSubsampling: quality >= 90 ? '4:4:4' : '4:2:0' })
        .toBuffer();
    case 'png':
      return pipe.png({ compressionLevel: 6 }).toBuffer();
    case 'webp':
      return pipe.webp(options.lossless ? { lossless: true } : { quality }).toBuffer();
    default:
      throw new RangeError(`unsupported output format ${String(format)}`);
  }
}

export function assertRgbImage(img: RgbImage, what = 'image'): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width <= 0 || img.height <= 0) {
    throw new RangeError(`${what}: invalid size ${img.width}×${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(
      `${what}: data has ${img.data.length} bytes, expected ${img.width * img.height * 3}`,
    );
  }
  if (img.alpha && img.alpha.length !== img.width * img.height) {
    throw new RangeError(`${what}: alpha has ${img.alpha.length} bytes, expected ${img.width * img.height}`);
  }
}

/**
 * Planar float32 CHW in [0, 1] (layout models take), from interleaved RGB. `mean`/`std` optional per channel.
 */
export function toFloatPlanes(
  img: RgbImage,
  mean: [number, number, number] = [0, 0, 0],
  std: [number, number, number] = [1, 1, 1],
): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(n * 3);
  for (let c = 0; c < 3; c++) {
    const m = mean[c];
    const s = std[c];
    for (let i = 0; i < n; i++) out[c * n + i] = (img.data[i * 3 + c] / 255 - m) / s;
  }
  return out;
}

/** Inverse of toFloatPlanes (values clamped and rounded to 8 bits). */
export function fromFloatPlanes(
  planes: Float32Array,
  width: number,
  height: number,
  mean: [number, number, number] = [0, 0, 0],
  std: [number, number, number] = [1, 1, 1],
): RgbImage {
  const n = width * height;
  if (planes.length !== n * 3) throw new RangeError(`expected ${n * 3} floats, got ${planes.length}`);
  const data = new Uint8Array(n * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) {
      const v = (planes[c * n + i] * std[c] + mean[c]) * 255;
      data[i * 3 + c] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
  return { width, height, data };
}
