/**
 * Minimal random-access ZIP reader and a streaming STORED-only ZIP writer.
 *
 * Why hand-written rather than a library: `torch.save` writes an uncompressed (STORED) archive whose
 * entries may use ZIP64 fields, and the real checkpoints are large (FaRL ≈ 700 MB). We want to read
 * the central directory and then pull single entries by offset straight into their final typed-array
 * buffer from a file handle, never holding the whole archive in memory (let alone twice, which is what
 * buffer-based unzip libraries such as fflate do). The format subset needed for that is small.
 */
import type { FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { CheckpointFormatError } from './errors.js';

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate (accepted for robustness; torch never writes it). */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOC = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

async function readAt(
  fh: FileHandle,
  pos: number,
  len: number,
  what: string,
  fileSize: number,
): Promise<Uint8Array> {
  if (pos < 0 || pos + len > fileSize) {
    throw new CheckpointFormatError(
      `zip truncated: ${what} at offset ${pos} (+${len} bytes) lies beyond the end of the file (${fileSize} bytes)`,
    );
  }
  const out = new Uint8Array(new ArrayBuffer(len));
  let done = 0;
  while (done < len) {
    const { bytesRead } = await fh.read(out, done, Math.min(len - done, 1 << 30), pos + done);
    if (bytesRead === 0)
      throw new CheckpointFormatError(
        `zip truncated: unexpected end of file reading ${what} at offset ${pos + done}`,
      );
    done += bytesRead;
  }
  return out;
}

function u64(dv: DataView, off: number, what: string): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointFormatError(`zip64 ${what} ${v} is too large`);
  return Number(v);
}

export class ZipReader {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    private readonly fh: FileHandle,
    readonly fileSize: number,
    readonly entries: ReadonlyMap<string, ZipEntry>,
  ) {}

  /** Parse the central directory of the archive open in `fh` (the handle stays owned by the caller). */
  static async open(fh: FileHandle, fileSize: number): Promise<ZipReader> {
    // The end-of-central-directory record is in the last 22 + 65535 (max comment) bytes.
    const tailLen = Math.min(fileSize, 22 + 65535);
    const tail = await readAt(fh, fileSize - tailLen, tailLen, 'end of central directory', fileSize);
    const tdv = new DataView(tail.buffer);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tdv.getUint32(i, true) === SIG_EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0)
      throw new CheckpointFormatError(
        'zip end-of-central-directory record not found (file truncated or not a zip archive)',
      );
    let count = tdv.getUint16(eocd + 10, true);
    let cdSize = tdv.getUint32(eocd + 12, true);
    let cdOffset = tdv.getUint32(eocd + 16, true);
    if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      const locPos = fileSize - tailLen + eocd - 20;
      const loc = await readAt(fh, locPos, 20, 'zip64 locator', fileSize);
      const ldv = new DataView(loc.buffer);
      if (ldv.getUint32(0, true) !== SIG_EOCD64_LOC)
        throw new CheckpointFormatError('zip64 end-of-central-directory locator missing');
      const recPos = u64(ldv, 8, 'record offset');
      const rec = await readAt(fh, recPos, 56, 'zip64 end of central directory', fileSize);
      const rdv = new DataView(rec.buffer);
      if (rdv.getUint32(0, true) !== SIG_EOCD64)
        throw new CheckpointFormatError('zip64 end-of-central-directory record has a bad signature');
      count = u64(rdv, 32, 'entry count');
      cdSize = u64(rdv, 40, 'central directory size');
      cdOffset = u64(rdv, 48, 'central directory offset');
    }
    const cd = await readAt(fh, cdOffset, cdSize, 'central directory', fileSize);
    const dv = new DataView(cd.buffer);
    const entries = new Map<string, ZipEntry>();
    const dec = new TextDecoder();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL) {
        throw new CheckpointFormatError(
          `zip central directory entry ${i} is corrupt (offset ${cdOffset + p})`,
        );
      }
      const method = dv.getUint16(p + 10, true);
      const crc32 = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let size = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize)
        throw new CheckpointFormatError(`zip central directory entry ${i} overruns the directory`);
      const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // ZIP64 extended information: only the fields saturated in the fixed header are present, in this order.
      let e = p + 46 + nameLen;
      const eEnd = e + extraLen;
      while (e + 4 <= eEnd) {
        const id = dv.getUint16(e, true);
        const len = dv.getUint16(e + 2, true);
        if (id === 0x0001) {
          let q = e + 4;
          const take = (what: string): number => {
            if (q + 8 > e + 4 + len)
              throw new CheckpointFormatError(`zip64 extra field of ${name} lacks ${what}`);
            const v = u64(dv, q, what);
            q += 8;
            return v;
          };
          if (size === U32_MAX) size = take('size');
          if (compressedSize === U32_MAX) compressedSize = take('compressed size');
          if (localHeaderOffset === U32_MAX) localHeaderOffset = take('local header offset');
        }
        e += 4 + len;
      }
      entries.set(name, { name, method, compressedSize, size, crc32, localHeaderOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
    return new ZipReader(fh, fileSize, entries);
  }

  /** Absolute file offset of the entry's (stored) data. */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const cached = this.dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    const h = await readAt(
      this.fh,
      entry.localHeaderOffset,
      30,
      `local header of ${entry.name}`,
      this.fileSize,
    );
    const dv = new DataView(h.buffer);
    if (dv.getUint32(0, true) !== SIG_LOCAL)
      throw new CheckpointFormatError(`zip local header of ${entry.name} has a bad signature`);
    // The local extra field may differ from the central one (torch pads it for 64-byte alignment).
    const off = entry.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    if (off + entry.compressedSize > this.fileSize) {
      throw new CheckpointFormatError(
        `zip truncated: entry ${entry.name} needs bytes up to ${off + entry.compressedSize}, file has ${this.fileSize}`,
      );
    }
    this.dataOffsets.set(entry.name, off);
    return off;
  }

  /** The entry's bytes in a fresh, exclusively owned ArrayBuffer (so typed views of any dtype can alias it). */
  async read(entry: ZipEntry): Promise<Uint8Array> {
    const off = await this.dataOffset(entry);
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size)
        throw new CheckpointFormatError(`stored zip entry ${entry.name} has differing sizes`);
      return readAt(this.fh, off, entry.size, `entry ${entry.name}`, this.fileSize);
    }
    if (entry.method === 8) {
      const raw = await readAt(this.fh, off, entry.compressedSize, `entry ${entry.name}`, this.fileSize);
      const out = zlib.inflateRawSync(raw);
      if (out.length !== entry.size)
        throw new CheckpointFormatError(
          `zip entry ${entry.name} inflates to ${out.length} bytes, expected ${entry.size}`,
        );
      return new Uint8Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.length));
    }
    throw new CheckpointFormatError(
      `zip entry ${entry.name} uses unsupported compression method ${entry.method}`,
    );
  }
}

let CRC_TABLE: Uint32Array | undefined;
// zlib.crc32 (native, ~10× faster) exists from Node 20.15; engines allows 20.9, so keep a fallback.
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** CRC-32 (IEEE), incremental: pass the previous value as `crc`. */
export function crc32(data: Uint8Array, crc = 0): number {
  if (nativeCrc32) return nativeCrc32(data, crc) >>> 0;
  return crc32Table(data, crc);
}

/** Table-driven CRC-32 (the portable fallback; exported for tests). */
export function crc32Table(data: Uint8Array, crc = 0): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

interface Written {
  name: Uint8Array;
  crc: number;
  size: number;
  offset: number;
}

/**
 * Streaming writer of a STORED zip, laid out like PyTorch's `PyTorchStreamWriter`: every entry's data
 * starts on a 64-byte boundary (padding goes into a local extra field with id "FB"), and ZIP64 records
 * are used only when a size or offset does not fit in 32 bits.
 */
export class ZipWriter {
  private pos = 0;
  private readonly written: Written[] = [];

  constructor(
    private readonly fh: FileHandle,
    private readonly align = 64,
    /** Use ZIP64 records for every entry even when 32 bits suffice (for exercising readers). */
    private readonly forceZip64 = false,
  ) {}

  private async put(b: Uint8Array): Promise<void> {
    let done = 0;
    while (done < b.length) {
      const { bytesWritten } = await this.fh.write(b, done, b.length - done, this.pos + done);
      done += bytesWritten;
    }
    this.pos += b.length;
  }

  async add(name: string, data: Uint8Array): Promise<void> {
    const nameBytes = new TextEncoder().encode(name);
    const big = data.length >= U32_MAX || this.forceZip64;
    const z64Len = big ? 20 : 0;
    const base = this.pos + 30 + nameBytes.length + z64Len + 4;
    const pad = (this.align - (base % this.align)) % this.align;
    const extraLen = z64Len + 4 + pad;
    const h = new Uint8Array(30 + nameBytes.length + extraLen);
    const dv = new DataView(h.buffer);
    const crc = crc32(data);
    dv.setUint32(0, SIG_LOCAL, true);
    dv.setUint16(4, big ? 45 : 20, true);
    dv.setUint16(6, 0x0800, true); // UTF-8 names
    dv.setUint16(8, 0, true); // stored
    dv.setUint32(14, crc, true);
    dv.setUint32(18, big ? U32_MAX : data.length, true);
    dv.setUint32(22, big ? U32_MAX : data.length, true);
    dv.setUint16(26, nameBytes.length, true);
    dv.setUint16(28, extraLen, true);
    h.set(nameBytes, 30);
    let e = 30 + nameBytes.length;
    if (big) {
      dv.setUint16(e, 0x0001, true);
      dv.setUint16(e + 2, 16, true);
      dv.setBigUint64(e + 4, BigInt(data.length), true);
      dv.setBigUint64(e + 12, BigInt(data.length), true);
      e += 20;
    }
    dv.setUint16(e, 0x4246, true); // "FB": padding, as torch writes it
    dv.setUint16(e + 2, pad, true);
    const offset = this.pos;
    await this.put(h);
    await this.put(data);
    this.written.push({ name: nameBytes, crc, size: data.length, offset });
  }

  /** Write the central directory (and ZIP64 end records when needed). Does not close the handle. */
  async finish(): Promise<void> {
    const cdStart = this.pos;
    for (const w of this.written) {
      const needSize = w.size >= U32_MAX || this.forceZip64;
      const needOff = w.offset >= U32_MAX || this.forceZip64;
      const z64Len = needSize || needOff ? 4 + (needSize ? 16 : 0) + (needOff ? 8 : 0) : 0;
      const c = new Uint8Array(46 + w.name.length + z64Len);
      const dv = new DataView(c.buffer);
      dv.setUint32(0, SIG_CENTRAL, true);
      dv.setUint16(4, z64Len ? 45 : 20, true);
      dv.setUint16(6, z64Len ? 45 : 20, true);
      dv.setUint16(8, 0x0800, true);
      dv.setUint32(16, w.crc, true);
      dv.setUint32(20, needSize ? U32_MAX : w.size, true);
      dv.setUint32(24, needSize ? U32_MAX : w.size, true);
      dv.setUint16(28, w.name.length, true);
      dv.setUint16(30, z64Len, true);
      dv.setUint32(42, needOff ? U32_MAX : w.offset, true);
      c.set(w.name, 46);
      if (z64Len) {
        let e = 46 + w.name.length;
        dv.setUint16(e, 0x0001, true);
        dv.setUint16(e + 2, z64Len - 4, true);
        e += 4;
        if (needSize) {
          dv.setBigUint64(e, BigInt(w.size), true);
          dv.setBigUint64(e + 8, BigInt(w.size), true);
          e += 16;
        }
        if (needOff) dv.setBigUint64(e, BigInt(w.offset), true);
      }
      await this.put(c);
    }
    const cdSize = this.pos - cdStart;
    const n = this.written.length;
    const z64 = n >= U16_MAX || cdStart >= U32_MAX || cdSize >= U32_MAX || this.forceZip64;
    if (z64) {
      const rec = new Uint8Array(56 + 20);
      const dv = new DataView(rec.buffer);
      const recPos = this.pos;
      dv.setUint32(0, SIG_EOCD64, true);
      dv.setBigUint64(4, 44n, true);
      dv.setUint16(12, 45, true);
      dv.setUint16(14, 45, true);
      dv.setBigUint64(24, BigInt(n), true);
      dv.setBigUint64(32, BigInt(n), true);
      dv.setBigUint64(40, BigInt(cdSize), true);
      dv.setBigUint64(48, BigInt(cdStart), true);
      dv.setUint32(56, SIG_EOCD64_LOC, true);
      dv.setBigUint64(64, BigInt(recPos), true);
      dv.setUint32(72, 1, true);
      await this.put(rec);
    }
    const end = new Uint8Array(22);
    const dv = new DataView(end.buffer);
    dv.setUint32(0, SIG_EOCD, true);
    dv.setUint16(8, z64 ? U16_MAX : n, true);
    dv.setUint16(10, z64 ? U16_MAX : n, true);
    dv.setUint32(12, z64 ? U32_MAX : cdSize, true);
    dv.setUint32(16, z64 ? U32_MAX : cdStart, true);
    await this.put(end);
  }
}
