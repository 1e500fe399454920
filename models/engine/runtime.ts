/**
 * onnxruntime sessions: execution-provider choice, thread settings, and feeds checked against the model's
 * declared inputs so a wrong shape or dtype fails with the tensor's name instead of an opaque kernel error.
 *
 * Provider choice cannot be silent (issue #13): `FALCO_PROVIDER=cuda|cpu|auto` (or `provider` in the options).
 *  - `cuda`: the CUDA execution provider must load, or session creation fails with a ProviderError that says
 *    what to check. The GPU worker's task definition sets it, so a worker without a usable GPU stops at start
 *    (and the ECS service shows it) instead of running the optimisation on the host CPU.
 *  - `cpu`: CPU only.
 *  - `auto` (default: laptops, CI, the local stack): CUDA when its provider library is installed, else CPU;
 *    a fallback is always logged (to `log`, or to stderr when the caller gave none).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';

export type Provider = 'cuda' | 'cpu';
export type ProviderChoice = 'auto' | Provider;
export type Feed = Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

export interface SessionOptions {
  /** Default: FALCO_PROVIDER, else 'auto'. */
  provider?: ProviderChoice;
  /** Intra-op threads (default: onnxruntime's choice = physical cores). */
  threads?: number;
  /**
   * Let idle worker threads busy-wait between ops (onnxruntime's default). Off unless FALCO_ORT_SPIN=1:
   * on a shared or oversubscribed CPU spinning burns the cycles other threads need (measured on the
   * 2-core CI machine: FaRL forward+backward 1319 → 674 ms wall with spinning off).
   */
  spin?: boolean;
  /**
   * onnxruntime's CPU memory arena, for a session that runs the same graph many times (the step: 50 runs
   * per face). Off by default (FALCO_ORT_ARENA=1 turns it on everywhere): a session run once per face
   * (render, encoder, targets) should give its activations back between runs rather than hold its high-water
   * mark for the life of the worker.
   *
   * Without the arena every run allocates its activations afresh: for the full-size step that is ~4 GB of
   * fresh pages, ~1 M page faults and 3-5 s of system time per step (of 11-12 s CPU; measured with
   * getrusage). With it the step runs in place: 2 faults, 35 ms system time, 7.0 s CPU.
   *
   * With the arena on, the CPU memory pattern is turned off: the pattern asks for one contiguous block per
   * run for all activations, which the arena, filled by the first run's separate allocations, cannot serve,
   * so it takes a second region (full-size step: 6.7 GB RSS with the pattern, 4.2 GB without, same CPU
   * time; the 1024-px generator's fwd+bwd went 3.3 → 6 GB the same way).
   */
  arena?: boolean;
  /** Where the chosen provider and any fallback are reported (fallbacks go to stderr when absent). */
  log?: (msg: string) => void;
}

/** The requested execution provider cannot be used (or FALCO_PROVIDER is not a valid choice). */
export class ProviderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProviderError';
  }
}

/** FALCO_PROVIDER, validated ('auto' when unset). */
export function providerFromEnv(env: NodeJS.ProcessEnv = process.env): ProviderChoice {
  const raw = env.FALCO_PROVIDER;
  const v = raw?.trim().toLowerCase();
  if (!v) return 'auto';
  if (v === 'auto' || v === 'cpu' || v === 'cuda') return v;
  throw new ProviderError(`FALCO_PROVIDER must be cuda, cpu or auto, got "${raw}"`);
}

/**
 * Where onnxruntime-node keeps its CUDA provider library (installed only with ONNXRUNTIME_NODE_INSTALL=cuda12,
 * as the worker image does; never on a developer machine, where .npmrc skips the download).
 */
export function cudaProviderLibrary(): string {
  const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  return join(
    dirname(pkg),
    'bin',
    'napi-v6',
    process.platform,
    process.arch,
    'libonnxruntime_providers_cuda.so',
  );
}

/**
 * Whether 'auto' tries CUDA: the provider library is installed. (onnxruntime-node's listSupportedBackends()
 * always reports CUDA as "not bundled", installed or not, so it cannot answer this.)
 */
export function cudaAvailable(): boolean {
  return existsSync(cudaProviderLibrary());
}

/**
 * The CUDA execution provider entry. onnxruntime-node 1.30's binding forwards only `deviceId` to the CUDA EP
 * (js/node/src/session_options_helper.cc builds OrtCUDAProviderOptionsV2 with device_id alone), so the EP's
 * own defaults apply, and they are the ones we want (checked against onnxruntime's CUDA EP documentation):
 *  - cudnn_conv_algo_search = EXHAUSTIVE: cuDNN benchmarks every convolution algorithm once per shape. Our
 *    shapes are static, and one face runs the same step graph 50 times (×3 attempts, × every image the task
 *    serves), so the one-time search at the first run pays for itself; the worker warms every session at start
 *    so no customer image pays it.
 *  - cudnn_conv_use_max_workspace = 1: lets cuDNN pick the fastest algorithms, which need large workspaces; a
 *    task owns its whole GPU (one task per GPU), so there is nothing to share the memory with.
 *  - arena_extend_strategy = kNextPowerOfTwo, gpu_mem_limit = unlimited: same reason (the whole GPU is ours).
 *    The weights are kept out of the arena (see `use_device_allocator_for_initializers` below), so the
 *    power-of-two rounding only applies to activations, whose high-water mark is reached on the first step and
 *    then reused for the life of the task.
 * FALCO_CUDA_DEVICE picks another GPU (default 0).
 */
function cudaEp(): { name: 'cuda'; deviceId: number } {
  const deviceId = Number(process.env.FALCO_CUDA_DEVICE ?? 0);
  if (!Number.isInteger(deviceId) || deviceId < 0)
    throw new ProviderError(`FALCO_CUDA_DEVICE must be a GPU index, got "${process.env.FALCO_CUDA_DEVICE}"`);
  return { name: 'cuda', deviceId };
}

// Without a logger, say it once per process (a bundle opens ~8 sessions) rather than never.
const warned = new Set<string>();
function warnOnce(msg: string): void {
  if (warned.has(msg)) return;
  warned.add(msg);
  console.warn(msg);
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0]!;
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
    const want = opts.provider ?? providerFromEnv();
    const warn = opts.log ?? warnOnce;
    const arena = opts.arena ?? process.env.FALCO_ORT_ARENA === '1';
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      logSeverityLevel: 3,
      enableCpuMemArena: arena,
      ...(arena ? { enableMemPattern: false } : {}),
    };
    const spin = opts.spin ?? process.env.FALCO_ORT_SPIN === '1';
    const extra: Record<string, Record<string, unknown>> = { session: {} };
    if (!spin) extra.session!.intra_op = { allow_spinning: '0' };
    const tryCreate = (p: Provider) => {
      const session = { ...extra.session };
      if (p === 'cuda') {
        // Initializers (≈1.5 GB of weights in production) are allocated exactly, outside the CUDA arena, so the
        // arena's power-of-two growth only ever covers activations.
        session.use_device_allocator_for_initializers = '1';
        // FALCO_CUDA_STRICT=1: fail session creation if any node would run on the CPU EP (a first-deploy check;
        // the static kernel-coverage test says none should).
        if (process.env.FALCO_CUDA_STRICT === '1') session.disable_cpu_ep_fallback = '1';
      }
      return ort.InferenceSession.create(model as never, {
        ...base,
        extra: { ...extra, session },
        executionProviders: p === 'cuda' ? [cudaEp(), 'cpu'] : ['cpu'],
      });
    };
    let provider: Provider = 'cpu';
    let inner: ort.InferenceSession;
    if (want === 'cuda') {
      try {
        inner = await tryCreate('cuda');
        provider = 'cuda';
      } catch (e) {
        if (e instanceof ProviderError) throw e;
        const lib = cudaProviderLibrary();
        throw new ProviderError(
          `FALCO_PROVIDER=cuda but the CUDA execution provider could not be used: ${firstLine(e)}. ` +
            (existsSync(lib)
              ? `The provider library is installed (${lib}); check that the CUDA 12 and cuDNN 9 libraries are on ` +
                'the library path (ldd on that file) and that the container sees a GPU (nvidia-smi).'
              : `The provider library ${lib} is not installed: install onnxruntime-node with ` +
                'ONNXRUNTIME_NODE_INSTALL=cuda12 (the worker image does), or set FALCO_PROVIDER=cpu or auto.'),
        );
      }
    } else if (want === 'auto') {
      if (cudaAvailable()) {
        try {
          inner = await tryCreate('cuda');
          provider = 'cuda';
        } catch (e) {
          if (e instanceof ProviderError) throw e;
          warn(`CUDA execution provider failed to load (${firstLine(e)}); falling back to CPU`);
          inner = await tryCreate('cpu');
        }
      } else {
        warn(`CUDA execution provider not installed (${cudaProviderLibrary()} missing); falling back to CPU`);
        inner = await tryCreate('cpu');
      }
    } else inner = await tryCreate('cpu');
    opts.log?.(`onnxruntime session on ${provider.toUpperCase()} (FALCO_PROVIDER=${want})`);
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
