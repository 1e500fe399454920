/**
 * onnxruntime sessions: execution-provider choice (CUDA when the binary and a GPU are there, else CPU,
 * and we log which one runs), thread settings, and feeds checked against the model's declared inputs so
 * a wrong shape or dtype fails with the tensor's name instead of an opaque kernel error.
 */
import ort from 'onnxruntime-node';

export type Provider = 'cuda' | 'cpu';
export type Feed = Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

export interface SessionOptions {
  provider?: 'auto' | Provider;
  /** Intra-op threads (default: onnxruntime's choice = physical cores). */
  threads?: number;
  /**
   * Let idle worker threads busy-wait between ops (onnxruntime's default). Off unless FALCO_ORT_SPIN=1:
   * on a shared or oversubscribed CPU spinning burns the cycles other threads need (measured on the
   * 2-core CI machine: FaRL forward+backward 1319 → 674 ms wall with spinning off).
   */
  spin?: boolean;
  /**
   * onnxruntime's CPU memory arena. Off unless FALCO_ORT_ARENA=1: the arena keeps the high-water mark of
   * every run and grew the 1024-px generator's fwd+bwd from 3.3 to 6 GB RSS on its second run; without
   * it peak RSS is 3.5 GB and falls back between runs, at equal or better speed (measured here).
   */
  arena?: boolean;
  log?: (msg: string) => void;
}

export class FeedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FeedError';
  }
}

const TYPE_OF: Record<string, string> = {
  Float32Array: 'float32',
  BigInt64Array: 'int64',
  Int32Array: 'int32',
  Uint8Array: 'bool',
  Uint16Array: 'float16',
};

export interface Output {
  data: Float32Array;
  dims: number[];
}

export class Session {
  private constructor(
    readonly inner: ort.InferenceSession,
    readonly provider: Provider,
  ) {}

  static async create(model: string | Uint8Array, opts: SessionOptions = {}): Promise<Session> {
    const want = opts.provider ?? (process.env.FALCO_PROVIDER as SessionOptions['provider']) ?? 'auto';
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      logSeverityLevel: 3,
      enableCpuMemArena: opts.arena ?? process.env.FALCO_ORT_ARENA === '1',
    };
    const spin = opts.spin ?? process.env.FALCO_ORT_SPIN === '1';
    if (!spin) base.extra = { session: { intra_op: { allow_spinning: '0' } } };
    const tryCreate = (p: Provider) =>
      ort.InferenceSession.create(model as never, {
        ...base,
        executionProviders: p === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
      });
    let provider: Provider = 'cpu';
    let inner: ort.InferenceSession;
    if (want === 'cuda' || (want === 'auto' && cudaAvailable())) {
      try {
        inner = await tryCreate('cuda');
        provider = 'cuda';
      } catch (e) {
        if (want === 'cuda') throw e;
        opts.log?.(`CUDA execution provider unavailable (${(e as Error).message.split('\n')[0]}); using CPU`);
        inner = await tryCreate('cpu');
      }
    } else inner = await tryCreate('cpu');
    opts.log?.(`onnxruntime session on ${provider.toUpperCase()}`);
    return new Session(inner, provider);
  }

  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }

  /** Run with typed arrays; returns the requested outputs (all by default) as float32 data + dims. */
  async run(feeds: Record<string, Feed>, fetch?: string[]): Promise<Record<string, Output>> {
    const tensors: Record<string, ort.Tensor> = {};
    for (const meta of this.inner.inputMetadata) {
      const v = feeds[meta.name];
      if (v === undefined) throw new FeedError(`missing input "${meta.name}"`);
      if (!meta.isTensor) throw new FeedError(`input "${meta.name}" is not a tensor`);
      const dims = meta.shape.map((d) => (typeof d === 'number' ? d : -1));
      const type = TYPE_OF[v.constructor.name];
      if (type !== meta.type)
        throw new FeedError(`input "${meta.name}": expected ${meta.type}, got ${v.constructor.name}`);
      const n = dims.reduce((a, b) => a * b, 1);
      if (dims.every((d) => d >= 0) && v.length !== n)
        throw new FeedError(
          `input "${meta.name}": expected shape [${dims.join(', ')}] (${n} values), got ${v.length} values`,
        );
      tensors[meta.name] = new ort.Tensor(meta.type as 'float32', v as Float32Array, dims);
    }
    for (const k of Object.keys(feeds))
      if (!this.inner.inputNames.includes(k))
        throw new FeedError(`unknown input "${k}"; the model takes ${this.inner.inputNames.join(', ')}`);
    const out = await this.inner.run(tensors, fetch ?? (this.inner.outputNames as string[]));
    const res: Record<string, Output> = {};
    for (const [k, t] of Object.entries(out)) {
      res[k] = { data: t.data as Float32Array, dims: t.dims.map(Number) };
    }
    return res;
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}

/** CUDA is tried only where the CUDA provider library was installed (ONNXRUNTIME_NODE_INSTALL=cuda12). */
export function cudaAvailable(): boolean {
  return (
    ort.listSupportedBackends().some((b) => b.name === 'cuda' && b.bundled) ||
    process.env.FALCO_TRY_CUDA === '1'
  );
}
