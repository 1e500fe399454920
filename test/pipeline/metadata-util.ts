/**
 * Test-only helpers to build and inspect image metadata independently of sharp's own reporting:
 * a tiny TIFF/EXIF reader that finds the GPS IFD, a JPEG segment lister, an IPTC (APP13) injector and a PNG
 * header forger for decompression-bomb inputs.
 */
import { deflateSync } from 'node:zlib';

/** Lists JPEG marker segments up to the start of scan: [{marker, data}] (data excludes marker and length). */
export function jpegSegments(buf: Uint8Array): Array<{ marker: number; data: Uint8Array }> {
  const out: Array<{ marker: number; data: Uint8Array }> = [];
  if (buf[0] !== 0xff || buf[1] !== 0xd8) throw new Error('not a JPEG');
  let i = 2;
  while (i + 4 <= buf.length) {
    if (buf[i] !== 0xff) throw new Error(`bad marker at ${i}`);
    const marker = buf[i + 1];
    const len = (buf[i + 2] << 8) | buf[i + 3];
    out.push({ marker, data: buf.subarray(i + 4, i + 2 + len) });
    if (marker === 0xda) break;
    i += 2 + len;
  }
  return out;
}

/** Parses a TIFF block (EXIF payload after "Exif\0\0") and returns GPS tags found, by tag id. */
export function gpsTags(tiff: Uint8Array): Map<number, number> {
  const dv = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const le = tiff[0] === 0x49;
  const u16 = (o: number): number => dv.getUint16(o, le);
  const u32 = (o: number): number => dv.getUint32(o, le);
  if (u16(2) !== 42) throw new Error('not a TIFF block');
  const tags = (ifd: number): Map<number, number> => {
    const m = new Map<number, number>();
    const n = u16(ifd);
    for (let k = 0; k < n; k++) {
      const e = ifd + 2 + k * 12;
      m.set(u16(e), u32(e + 8));
    }
    return m;
  };
  const ifd0 = tags(u32(4));
  const gpsOffset = ifd0.get(0x8825);
  return gpsOffset === undefined ? new Map() : tags(gpsOffset);
}

/** EXIF TIFF payload from sharp's `metadata().exif` (which starts with "Exif\0\0"). */
export function exifTiff(exif: Uint8Array): Uint8Array {
  const head = Buffer.from(exif.subarray(0, 6)).toString('latin1');
  return head === 'Exif\0\0' ? exif.subarray(6) : exif;
}

/** Inserts an APP13 "Photoshop 3.0" IPTC block (caption + byline) right after SOI. */
export function withIptc(jpeg: Uint8Array, caption: string): Uint8Array {
  const ds = (rec: number, tag: number, text: string): Buffer => {
    const v = Buffer.from(text, 'utf8');
    return Buffer.concat([Buffer.from([0x1c, rec, tag, v.length >> 8, v.length & 255]), v]);
  };
  const iptc = Buffer.concat([ds(2, 0, '\0\x04'), ds(2, 120, caption), ds(2, 80, 'Test Photographer')]);
  const pad = iptc.length % 2 ? Buffer.from([0]) : Buffer.alloc(0);
  const size = Buffer.alloc(4);
  size.writeUInt32BE(iptc.length);
  const irb = Buffer.concat([
    Buffer.from('8BIM', 'latin1'),
    Buffer.from([0x04, 0x04, 0, 0]),
    size,
    iptc,
    pad,
  ]);
  const payload = Buffer.concat([Buffer.from('Photoshop 3.0\0', 'latin1'), irb]);
  const len = payload.length + 2;
  const seg = Buffer.concat([Buffer.from([0xff, 0xed, len >> 8, len & 255]), payload]);
  return Buffer.concat([jpeg.subarray(0, 2), seg, jpeg.subarray(2)]);
}

function crc32(b: Uint8Array): number {
  let crc = 0xffffffff;
  for (let n = 0; n < b.length; n++) {
    let c = (crc ^ b[n]) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A syntactically valid PNG whose header claims width×height RGB but whose data is a few zero bytes. */
export function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(64))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}
