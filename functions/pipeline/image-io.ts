/**
 * Image decoding and encoding for customer photos (sharp / libvips).
 *
 * One decode policy for the whole service (the API's upload validation and the worker's decode both run it).
 * Order of checks, cheapest and safest first, so that hostile inputs never reach a decoder:
 *  1. byte length (0 bytes → `empty-image`, above `maxBytes` → `image-too-large`);
 *  2. magic bytes (formats.ts, the one sniffer): only JPEG, PNG and WebP → else `unsupported-image-type`;
 *  3. header-only metadata (no pixel decoding; libvips' own pixel limit off so that *we* word the error with the
 *     real numbers): width × height above `maxPixels` or a side above `maxDimension` → `too-many-pixels`. This
 *     refuses decompression bombs (a 60000×60000 PNG of a few hundred bytes) before any pixel memory exists;
 *  4. a full decode at the strictest failure level, `failOn: 'warning'`: libjpeg reports a scan that ends
 *     before the rows its SOF header declares only as a *warning* ("premature end of data segment") and fills
 *     the rest with grey, so any laxer level lets a JPEG whose header was raised to 6000×6000 over 1920×1280 of
 *     data through as a 36 MP, mostly grey image; then the decoded size must equal the header's;
 *  5. every failure is worded by us from this request's own bytes (`looksTruncated`), never from libvips'
 *     error text: libvips keeps one process-global error buffer, so under concurrency a message can carry
 *     another request's error (a "VipsJpeg: Corrupt JPEG data" in a WebP request) or "(Unknown error)".
 * Error codes are kebab-case, the same slugs the API's problem details use.
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
import { DEFAULT_RESOURCE_LIMITS, formatMegapixels } from '../shared/limits.js';
import { FORMATS, looksTruncated, sniff } from './formats.js';
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

/** The service's limits (functions/shared/limits.ts); callers pass their deployment's values. */
export const DEFAULT_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxBytes: DEFAULT_RESOURCE_LIMITS.maxUploadBytes,
  maxPixels: DEFAULT_RESOURCE_LIMITS.maxPixels,
  maxDimension: DEFAULT_RESOURCE_LIMITS.maxSide,
});

/** The strictest libvips failure level: a decoder warning (truncated scan, corrupt data) is an error. */
export const FAIL_ON = 'warning' as const;

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

export function contentTypeOf(format: ImageFormat): string {
  return FORMATS[format].contentType;
}

/** JPEG, PNG or WebP from the signature (formats.ts); null for anything else. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | null {
  return sniff(bytes).format;
}

function limitsOf(partial?: Partial<ImageLimits>): ImageLimits {
  const l = { ...DEFAULT_LIMITS, ...partial };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isFinite(v) || v <= 0)
      throw new RangeError(`image limit ${k} must be a positive number, got ${v}`);
  }
  return l;
}

/**
 * Our own wording of a libvips failure, decided from this request's bytes only (see the file comment). The
 * libvips text is kept as the error's `cause` for server logs, never in the message.
 */
function decodeError(
  err: unknown,
  format: ImageFormat,
  bytes: Uint8Array,
  header?: { width: number; height: number },
): InputError {
  const label = FORMATS[format].label;
  const e = looksTruncated(bytes, format)
    ? new InputError(
        'truncated-image',
        `the ${label} file is truncated: it ends before the end of its image data`,
      )
    : new InputError(
        'corrupt-image',
        header
          ? `the ${label} pixel data is corrupt, or shorter than the ${header.width}×${header.height} its header declares`
          : `the ${label} header is corrupt and cannot be read`,
      );
  Object.defineProperty(e, 'cause', { value: err, enumerable: false });
  return e;
}

/** Header checks only (size, signature, dimensions); decodes no pixels. */
export async function probeImage(bytes: Uint8Array, limits?: Partial<ImageLimits>): Promise<ProbeResult> {
  const lim = limitsOf(limits);
  if (!(bytes instanceof Uint8Array))
    throw new InputError('invalid-input', 'the image must be given as bytes');
  if (bytes.length === 0) throw new InputError('empty-image', 'the file is empty (0 bytes)');
  if (bytes.length > lim.maxBytes) {
    throw new InputError(
      'image-too-large',
      `the file is ${bytes.length} bytes; the limit is ${lim.maxBytes} bytes`,
    );
  }
  const { format, guess } = sniff(bytes);
  if (format === null) {
    throw new InputError(
      'unsupported-image-type',
      `the file looks like ${guess}; only JPEG, PNG and WebP are accepted (detected from the file content)`,
    );
  }
  const label = FORMATS[format].label;
  let meta: Metadata;
  try {
    // limitInputPixels:false so that we, not libvips, produce the size error with the real numbers;
    // metadata() reads headers only, so an oversized header costs nothing.
    meta = await sharp(bytes, { limitInputPixels: false, failOn: FAIL_ON }).metadata();
  } catch (err) {
    throw decodeError(err, format, bytes);
  }
  if (meta.format !== format) {
    // The signature said one thing and libvips parsed another: refuse rather than guess.
    throw new InputError('corrupt-image', `the file starts like ${label} but cannot be read as one`);
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (!(w > 0 && h > 0)) throw new InputError('corrupt-image', `the ${label} header has no valid size`);
  if (w * h > lim.maxPixels) {
    const mp = formatMegapixels(w * h, lim.maxPixels);
    throw new InputError('too-many-pixels', `${w}×${h} = ${mp.value} exceeds the ${mp.limit} limit`);
  }
  if (w > lim.maxDimension || h > lim.maxDimension) {
    throw new InputError(
      'too-many-pixels',
      `${w}×${h}: the longest side, ${Math.max(w, h)} px, exceeds the ${lim.maxDimension} px limit`,
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
 * The API's upload check: the header checks, then a full decode at the same strict level as the worker's
 * (shrink-on-load keeps the memory small: JPEG decodes at 1/8 scale, yet every scan byte is still read, so a
 * truncated or raised-SOF file fails here exactly as it would in the worker).
 */
export async function checkImage(bytes: Uint8Array, limits?: Partial<ImageLimits>): Promise<ProbeResult> {
  const lim = limitsOf(limits);
  const probe = await probeImage(bytes, lim);
  try {
    await sharp(bytes, { failOn: FAIL_ON, limitInputPixels: lim.maxPixels, sequentialRead: true })
      .resize(64, 64, { fit: 'inside' })
      .raw()
      .toBuffer();
  } catch (err) {
    throw decodeError(err, probe.format, bytes, probe);
  }
  return probe;
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
    raw = await sharp(bytes, { limitInputPixels: lim.maxPixels, failOn: FAIL_ON, autoOrient: true })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(err, probe.format, bytes, probe);
  }
  const { width, height, channels } = raw.info;
  if (width !== probe.width || height !== probe.height) {
    throw new InputError(
      'corrupt-image',
      `the decoded size ${width}×${height} does not match the header's ${probe.width}×${probe.height}`,
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
      'unsupported-image-type',
      `unsupported channel layout (${channels} channels after sRGB conversion)`,
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
