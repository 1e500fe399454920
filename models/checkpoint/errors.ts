/**
 * Typed errors of the checkpoint / fixture readers. Every failure to understand an input ends in one
 * of these (never a generic TypeError from deep inside a parser), so callers can tell a corrupt file
 * from an unsupported-but-valid one and the message always names the offending opcode, class or entry.
 */

export class CheckpointError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The file is not a checkpoint we recognise, or is truncated / internally inconsistent. */
export class CheckpointFormatError extends CheckpointError {}

/** A pickle opcode we do not implement (or that is invalid in the stream). */
export class UnsupportedOpcodeError extends CheckpointError {
  constructor(
    readonly opcode: number,
    readonly offset: number,
    readonly opname: string,
  ) {
    super(
      `unsupported pickle opcode ${opname} (0x${opcode.toString(16).padStart(2, '0')}) at offset ${offset}`,
    );
  }
}

/** A pickled global (class or function) that the loader does not know how to rebuild. */
export class UnsupportedClassError extends CheckpointError {
  constructor(
    readonly module: string,
    readonly qualname: string,
    detail?: string,
  ) {
    super(`unsupported pickled class/function ${module}.${qualname}${detail ? `: ${detail}` : ''}`);
  }
}

/** The pickle stream is malformed (stack underflow, missing MARK, memo miss, truncated data...). */
export class PickleFormatError extends CheckpointError {}

/** A tensor/storage description is inconsistent (view outside its storage, unknown dtype...). */
export class TensorFormatError extends CheckpointError {}

/** A .npy / spec / cases file is malformed or uses an unsupported feature. */
export class FixtureFormatError extends CheckpointError {}
