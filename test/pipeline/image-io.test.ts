import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  decodeImage,
  encodeImage,
  probeImage,
  sniffFormat,
  type RgbImage,
} from '../../functions/pipeline/image-io.js';
import { InputError } from '../../functions/pipeline/types.js';
import { samplePath } from '../faceapi/oracle.js';
import { exifTiff, gpsTags, jpegSegments, pngBomb, withIptc } from './metadata-util.js';

const sample1 = readFileSync(samplePath(1));

async function inputError(p: Promise<unknown>): Promise<InputError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return err as InputError;
  }
  throw new Error('expected an InputError, got success');
}

/** A JPEG with GPS EXIF, XMP and IPTC, as a phone/DAM-processed photo would have. */
async function photoWithEverything(): Promise<Buffer> {
  const jpeg = await sharp(sample1)
    .resize({ width: 480 })
    .withExif({
      IFD0: { Copyright: 'Someone', Make: 'TestCam', Model: 'X1' },
      IFD3: {
        GPSLatitudeRef: 'N',
        GPSLatitude: '48/1 51/1 2964/100',
        GPSLongitudeRef: 'E',
        GPSLongitude: '2/1 17/1 4020/100',
      },
    })
    .withXmp(
      '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Secret Name"/></rdf:RDF></x:xmpmeta>',
    )
    .withIccProfile('p3')
    .jpeg({ quality: 90 })
    .toBuffer();
  return Buffer.from(withIptc(jpeg, 'Secret caption'));
}

describe('image-io: formats and decoding', () => {
  it('sniffs JPEG/PNG/WebP by signature and nothing else', async () => {
    const px = sharp({ create: { width: 2, height: 2, channels: 3, background: '#808080' } });
    expect(sniffFormat(await px.clone().jpeg().toBuffer())).toBe('jpeg');
    expect(sniffFormat(await px.clone().png().toBuffer())).toBe('png');
    expect(sniffFormat(await px.clone().webp().toBuffer())).toBe('webp');
    expect(sniffFormat(await px.clone().gif().toBuffer())).toBeNull();
    expect(sniffFormat(await px.clone().tiff().toBuffer())).toBeNull();
    expect(sniffFormat(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeNull();
  });

  it('decodes a sample photo to 8-bit RGB and reports its metadata', async () => {
    const d = await decodeImage(sample1);
    expect([d.format, d.width, d.height, d.image.width, d.image.height]).toEqual([
      'jpeg',
      1920,
      1280,
      1920,
      1280,
    ]);
    expect(d.image.data.length).toBe(1920 * 1280 * 3);
    expect(d.metadata.exif).toBe(true);
    expect(d.image.alpha).toBeUndefined();
  });

  it('applies EXIF orientation (6 = rotate 90° clockwise) to the pixels', async () => {
    // 40×20 stored: left half red, right half blue. Displayed: 20×40 with red on top.
    const raw = new Uint8Array(40 * 20 * 3);
    for (let y = 0; y < 20; y++)
      for (let x = 0; x < 40; x++) raw.set(x < 20 ? [255, 0, 0] : [0, 0, 255], (y * 40 + x) * 3);
    const jpeg = await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .jpeg({ quality: 95 })
      .toBuffer();
    expect((await sharp(jpeg).metadata()).orientation).toBe(6);
    const d = await decodeImage(jpeg);
    expect([d.orientation, d.width, d.height]).toEqual([6, 20, 40]);
    const at = (x: number, y: number): number[] =>
      Array.from(d.image.data.subarray((y * 20 + x) * 3, (y * 20 + x) * 3 + 3));
    expect(at(10, 5)[0]).toBeGreaterThan(200);
    expect(at(10, 5)[2]).toBeLessThan(60);
    expect(at(10, 34)[2]).toBeGreaterThan(200);
    expect(at(10, 34)[0]).toBeLessThan(60);
  });

  it('keeps alpha through a PNG round trip and PNG/lossless WebP are pixel-exact', async () => {
    const img: RgbImage = {
      width: 16,
      height: 8,
      data: new Uint8Array(16 * 8 * 3),
      alpha: new Uint8Array(16 * 8),
    };
    for (let i = 0; i < 16 * 8; i++) {
      img.data.set([i % 256, (i * 7) % 256, (i * 13) % 256], i * 3);
      img.alpha![i] = (i * 5) % 256;
    }
    const png = await decodeImage(await encodeImage(img, 'png'));
    expect(Buffer.from(png.image.data).equals(Buffer.from(img.data))).toBe(true);
    expect(Buffer.from(png.image.alpha!).equals(Buffer.from(img.alpha!))).toBe(true);
    const opaque: RgbImage = { width: 16, height: 8, data: img.data };
    const webp = await decodeImage(await encodeImage(opaque, 'webp', { lossless: true }));
    expect(webp.format).toBe('webp');
    expect(Buffer.from(webp.image.data).equals(Buffer.from(img.data))).toBe(true);
  });
});

describe('image-io: metadata stripping', () => {
  it('input carries GPS, XMP, IPTC and ICC; no output format carries any of them', async () => {
    const input = await photoWithEverything();
    const meta = await sharp(input).metadata();
    expect(meta.exif && meta.xmp && meta.iptc && meta.icc).toBeTruthy();
    const gps = gpsTags(exifTiff(meta.exif!));
    expect(gps.has(0x0002)).toBe(true); // GPSLatitude
    expect(gps.has(0x0004)).toBe(true); // GPSLongitude
    const probe = await probeImage(input);
    expect(probe.metadata).toEqual({ exif: true, xmp: true, iptc: true, icc: true });

    const { image } = await decodeImage(input);
    for (const fmt of ['jpeg', 'png', 'webp'] as const) {
      const out = await encodeImage(image, fmt);
      const m = await sharp(out).metadata();
      expect(m.format).toBe(fmt);
      expect([m.exif, m.xmp, m.iptc, m.icc]).toEqual([undefined, undefined, undefined, undefined]);
      // And independently of sharp's parser: no trace of the strings in the file.
      const text = out.toString('latin1');
      for (const needle of [
        'Exif\0',
        'GPS',
        'Secret',
        'TestCam',
        'Photoshop 3.0',
        'xmpmeta',
        'ICC_PROFILE',
        'iCCP',
        'eXIf',
      ]) {
        expect(text.includes(needle), `${fmt} output contains ${JSON.stringify(needle)}`).toBe(false);
      }
      if (fmt === 'jpeg') {
        // Only JFIF (APP0), tables, frame and scan segments: no APP1 (EXIF/XMP), APP2 (ICC), APP13 (IPTC).
        const markers = jpegSegments(out).map((s) => s.marker);
        expect(markers.filter((mk) => mk >= 0xe1 && mk <= 0xef)).toEqual([]);
      }
    }
  });

  it('converts an embedded wide-gamut profile to sRGB before dropping it', async () => {
    // sRGB pure red, stored as Display P3 values (≈ 234,51,35) with the P3 profile attached.
    const red = await sharp({
      create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } },
    })
      .png()
      .toBuffer();
    const p3 = await sharp(red).withIccProfile('p3').png().toBuffer();
    const stored = await sharp(p3).keepIccProfile().raw().toBuffer();
    expect(stored[0]).toBeLessThan(245); // the file really holds P3 numbers
    const d = await decodeImage(p3);
    expect(d.metadata.icc).toBe(true);
    expect(Array.from(d.image.data.subarray(0, 3))).toEqual([255, 0, 0]);
    expect((await sharp(await encodeImage(d.image, 'png')).metadata()).icc).toBeUndefined();
  });
});

describe('image-io: bad inputs give typed errors', () => {
  it('0 bytes → empty', async () => {
    expect((await inputError(decodeImage(new Uint8Array(0)))).code).toBe('empty-image');
  });

  it('a text file → unsupported_format naming what it looks like', async () => {
    const e = await inputError(decodeImage(Buffer.from('name,email\nalice,a@example.com\n')));
    expect(e.code).toBe('unsupported-image-type');
    expect(e.message).toMatch(/text/);
    expect(e.message).toMatch(/JPEG, PNG and WebP/);
  });

  it('SVG and GIF are refused before reaching libvips', async () => {
    expect(
      (
        await inputError(
          decodeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')),
        )
      ).code,
    ).toBe('unsupported-image-type');
    const gif = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } })
      .gif()
      .toBuffer();
    const e = await inputError(decodeImage(gif));
    expect([e.code, /GIF/.test(e.message)]).toEqual(['unsupported-image-type', true]);
  });

  it('a truncated JPEG → truncated', async () => {
    const e = await inputError(decodeImage(sample1.subarray(0, Math.floor(sample1.length / 2))));
    expect(e.code).toBe('truncated-image');
    expect(e.message).toMatch(/truncated/i);
  });

  it('a JPEG signature followed by garbage → corrupt', async () => {
    const junk = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, 0x41)]);
    const e = await inputError(decodeImage(junk));
    expect(['corrupt-image', 'truncated-image']).toContain(e.code);
  });

  it('a 20000×20000 PNG header (decompression bomb) → too_many_pixels, refused from the header alone', async () => {
    const bomb = pngBomb(20000, 20000);
    expect(bomb.length).toBeLessThan(200);
    const e = await inputError(probeImage(bomb));
    expect(e.code).toBe('too-many-pixels');
    expect(e.message).toContain('20000×20000');
    expect((await inputError(decodeImage(bomb))).code).toBe('too-many-pixels');
    // The dimension limit catches thin bombs whose pixel count alone is acceptable.
    expect((await inputError(decodeImage(pngBomb(40000, 10)))).code).toBe('too-many-pixels');
  });

  it('byte and pixel limits are configurable and enforced with the numbers in the message', async () => {
    const e = await inputError(decodeImage(sample1, { maxBytes: 1000 }));
    expect(e.code).toBe('image-too-large');
    expect(e.message).toContain(String(sample1.length));
    expect((await inputError(decodeImage(sample1, { maxPixels: 1_000_000 }))).code).toBe('too-many-pixels');
  });
});
