/**
 * The FALCO runtime over a model bundle: five onnxruntime sessions kept warm for the life of the
 * engine (one instance serves many images), and the host side of the method:
 *
 *   invert   e4e: aligned face at 256 → W+ code `real`
 *   targets  ArcFace identity + FaRL tokens of the original aligned face (+ FaRL embedding for the pool)
 *   nearest  the fake pool's nearest neighbour by cosine similarity in FaRL space
 *   optimize latent composition w = real outside the trainable range, fake inside, then `steps` Adam
 *            steps on the trainable rows (one step.onnx run each; lr from MultiStepLR on the host)
 *   render   G(w) → image
 *   mapping  z → W+ with truncation ψ (fake pool sampling)
 *
 * Tensor names and layouts are those of ./contract.ts; shapes are read from the sessions' metadata so
 * bundles of any resolution / token width work without code changes.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fmix32 } from '../fixtures/pattern.js';
import * as E from '../engine/index.js';
import { readNpy } from '../fixtures/npy.js';
import { toFloat32 } from '../checkpoint/tensor.js';
import { BundleError, checkLayers, readManifest, type BundleManifest } from '../bundle/manifest.js';
import { ADAM, IO, MODEL_FILES, stepBatchFile, type ModelName } from './contract.js';

export const W_DIM = 512;

export interface EngineOptions {
  provider?: 'auto' | 'cpu' | 'cuda';
  /** onnxruntime intra-op threads (default: onnxruntime's choice). */
  threads?: number;
  log?: (msg: string) => void;
}

export interface Targets {
  /** ArcFace identity [512], L2-normalised. */
  id: Float32Array;
  /** FaRL tokens before ln_post [T·D]. */
  tokens: Float32Array;
  /** FaRL embedding [Dp], L2-normalised (pool lookup). */
  farl: Float32Array;
}

export interface OptimizeParams {
  /** e4e code of the real face [L·512]. */
  real: Float32Array;
  /** Fake code from the pool [L·512]. */
  fake: Float32Array;
  targets: Pick<Targets, 'id' | 'tokens'>;
  layers: [number, number];
  steps: number;
  lr: number;
  lrMilestones: number[];
  lrGamma: number;
  margin: number;
  lambdaId: number;
  lambdaAttr: number;
  onStep?: (step: number, steps: number, losses: [number, number, number]) => void;
  /** Checked before every step: an aborted job stops within one step. */
  signal?: AbortSignal;
}

export interface OptimizeResult {
  /** Composed W+ code after the last update [L·512]. */
  code: Float32Array;
  /** (loss, id, attr) evaluated before each update. */
  losses: Array<[number, number, number]>;
  /** Wall time per step (ms), for benchmarks. */
  stepMs: number[];
}

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineError';
  }
}

/** FALCO's MultiStepLR milestones: int(fraction · steps) (Python int() truncates). */
export function lrMilestones(fractions: readonly number[], steps: number): number[] {
  return fractions.map((f) => Math.trunc(f * steps));
}

/** Composition: rows in [start, end) from `inner`, the others from `outer` (both [L·512]). */
export function composeCode(
  outer: Float32Array,
  inner: Float32Array,
  layers: [number, number],
  L: number,
): Float32Array {
  if (outer.length !== L * W_DIM || inner.length !== L * W_DIM)
    throw new EngineError(`W+ codes must have ${L}×${W_DIM} values, got ${outer.length} and ${inner.length}`);
  const out = Float32Array.from(outer);
  out.set(inner.subarray(layers[0] * W_DIM, layers[1] * W_DIM), layers[0] * W_DIM);
  return out;
}

/** A 32-bit mix of (seed, index): deterministic tie-breaking that changes with the seed. */
export function seededRank(seed: number, i: number): number {
  return fmix32((Math.imul(i + 1, 0x9e3779b9) ^ Math.imul(seed | 0, 0x85ebca6b)) >>> 0);
}

export interface Pool {
  n: number;
  /** [n·L·512] */
  codes: Float32Array;
  /** [n·D], rows L2-normalised */
  features: Float32Array;
  dim: number;
}

/**
 * Indices of the pool entries ordered by cosine similarity to `query` (highest first); exact ties are
 * ordered by a hash of (seed, index) so equal features never make the choice depend on pool order only.
 */
export function rankPool(
  pool: Pool,
  query: Float32Array,
  seed = 0,
): Array<{ index: number; similarity: number }> {
  if (query.length !== pool.dim)
    throw new EngineError(`pool features have ${pool.dim} dimensions, the query has ${query.length}`);
  let qn = 0;
  for (const v of query) qn += v * v;
  qn = Math.sqrt(qn) || 1;
  const out: Array<{ index: number; similarity: number; rank: number }> = [];
  for (let i = 0; i < pool.n; i++) {
    let dot = 0;
    let fn = 0;
    const off = i * pool.dim;
    for (let k = 0; k < pool.dim; k++) {
      const f = pool.features[off + k]!;
      dot += f * query[k]!;
      fn += f * f;
    }
    out.push({ index: i, similarity: dot / (qn * (Math.sqrt(fn) || 1)), rank: seededRank(seed, i) });
  }
  out.sort((a, b) => b.similarity - a.similarity || a.rank - b.rank);
  return out.map(({ index, similarity }) => ({ index, similarity }));
}

export interface OptimizeBatchOptions {
  /** Faces per step.onnx run (default: the largest batched step model of the bundle, else 1). */
  batch?: number;
}

export class FalcoEngine {
  private sessions = new Map<ModelName, Promise<E.Session>>();
  private batchSessions = new Map<number, Promise<E.Session>>();
  /** Provider of every session created so far (reports say where an image actually ran). */
  private readonly created = new Map<ModelName, E.Provider>();
  private poolCache?: Pool;
  readonly L: number;
  readonly N: number;

  private constructor(
    readonly dir: string,
    readonly manifest: BundleManifest,
    private readonly opts: EngineOptions,
  ) {
    this.L = manifest.wLayers;
    this.N = manifest.resolution;
  }

  /** Open a bundle (manifest validated, files checked); sessions are created on first use or by `warmup`. */
  static async open(dir: string, opts: EngineOptions = {}): Promise<FalcoEngine> {
    return new FalcoEngine(dir, await readManifest(dir), opts);
  }

  /** The onnxruntime session of `name`, created once and kept. */
  session(name: ModelName): Promise<E.Session> {
    let s = this.sessions.get(name);
    if (!s) {
      s = (async () => {
        const sess = await E.Session.create(join(this.dir, MODEL_FILES[name]), {
          // The step runs 50 times per face: keep its activations in an arena between runs (runtime.ts).
          ...(name === 'step' ? { arena: true } : {}),
          // Unset: FALCO_PROVIDER decides (runtime.ts), so the worker's task definition reaches every session.
          ...(this.opts.provider ? { provider: this.opts.provider } : {}),
          ...(this.opts.threads ? { threads: this.opts.threads } : {}),
          ...(this.opts.log ? { log: (m: string) => this.opts.log!(`${name}: ${m}`) } : {}),
        });
        const want = IO[name];
        const missing = [
          ...want.inputs.filter((i) => !sess.inputNames.includes(i)),
          ...want.outputs.filter((o) => !sess.outputNames.includes(o)),
        ];
        if (missing.length)
          throw new BundleError(
            `${MODEL_FILES[name]} does not follow the model contract: missing tensors ${missing.join(', ')}`,
          );
        this.created.set(name, sess.provider);
        return sess;
      })();
      // A failed creation must not be cached forever (e.g. a transient CUDA error): retry next time.
      s.catch(() => this.sessions.delete(name));
      this.sessions.set(name, s);
    }
    return s;
  }

  /** Create the sessions now (all five, or those named). */
  async warmup(names: ModelName[] = ['encoder', 'targets', 'step', 'render']): Promise<void> {
    for (const n of names) await this.session(n);
  }

  /**
   * Where the models run, without creating a session: the step session's provider (where the per-step cost
   * lives) when it exists, else that of any session created so far; undefined before the first.
   */
  activeProvider(): E.Provider | undefined {
    return this.created.get('step') ?? this.created.values().next().value;
  }

  /** Provider of the step session (where the per-step cost lives). */
  async provider(): Promise<E.Provider> {
    return (await this.session('step')).provider;
  }

  private checkLen(what: string, v: Float32Array, n: number): void {
    if (v.length !== n) throw new EngineError(`${what}: expected ${n} values, got ${v.length}`);
  }

  /** e4e inversion: [1,3,256,256] in [-1,1] → W+ [L·512]. */
  async invert(image256: Float32Array): Promise<Float32Array> {
    this.checkLen('invert input', image256, 3 * 256 * 256);
    const out = await (await this.session('encoder')).run({ image: image256 });
    const wp = out['wplus']!;
    this.checkLen('encoder output wplus', wp.data, this.L * W_DIM);
    return Float32Array.from(wp.data);
  }

  /** Identity / attribute targets of an aligned face [1,3,N,N] in [-1,1]. */
  async targets(imageN: Float32Array): Promise<Targets> {
    this.checkLen('targets input', imageN, 3 * this.N * this.N);
    const out = await (await this.session('targets')).run({ image: imageN });
    return {
      id: Float32Array.from(out['id']!.data),
      tokens: Float32Array.from(out['tokens']!.data),
      farl: Float32Array.from(out['farl']!.data),
    };
  }

  /** G(w): W+ [L·512] → image [3·N·N] (≈[-1,1], not clamped). */
  async render(wp: Float32Array): Promise<Float32Array> {
    this.checkLen('render input', wp, this.L * W_DIM);
    const out = await (await this.session('render')).run({ wp });
    return Float32Array.from(out['image']!.data);
  }

  /** z [512] → W+ [L·512] with truncation ψ. */
  async mapping(z: Float32Array, psi: number): Promise<Float32Array> {
    this.checkLen('mapping input', z, W_DIM);
    const out = await (await this.session('mapping')).run({ z, psi: Float32Array.of(psi) });
    return Float32Array.from(out['wp']!.data);
  }

  /** The bundle's fake pool (loaded once). */
  pool(): Pool {
    if (this.poolCache) return this.poolCache;
    const p = this.manifest.pool;
    if (!p)
      throw new BundleError(
        `bundle ${this.dir} has no fake pool; run \`npm run models -- pool --bundle ${this.dir} --n 64\``,
      );
    const codes = readNpy(join(this.dir, p.codes));
    const feats = readNpy(join(this.dir, p.features));
    if (codes.shape.join() !== [p.n, this.L, W_DIM].join())
      throw new BundleError(
        `pool codes have shape [${codes.shape.join(', ')}], expected [${p.n}, ${this.L}, ${W_DIM}]`,
      );
    if (feats.shape.join() !== [p.n, p.featureDim].join())
      throw new BundleError(
        `pool features have shape [${feats.shape.join(', ')}], expected [${p.n}, ${p.featureDim}]`,
      );
    this.poolCache = { n: p.n, codes: toFloat32(codes), features: toFloat32(feats), dim: p.featureDim };
    return this.poolCache;
  }

  /** Pool entries nearest to a FaRL embedding (cosine), best first. */
  nearest(farl: Float32Array, seed = 0): Array<{ index: number; similarity: number; code: Float32Array }> {
    const pool = this.pool();
    const size = this.L * W_DIM;
    return rankPool(pool, farl, seed).map((r) => ({
      ...r,
      code: pool.codes.subarray(r.index * size, (r.index + 1) * size),
    }));
  }

  /**
   * FALCO's optimisation: t starts as the composition (fake rows inside `layers`, real elsewhere); each
   * step.onnx run evaluates the loss at t, back-propagates and applies one Adam update to the masked rows.
   */
  async optimize(p: OptimizeParams): Promise<OptimizeResult> {
    const L = this.L;
    const layers = checkLayers(p.layers, this.manifest.trainableRange);
    if (!Number.isInteger(p.steps) || p.steps < 0)
      throw new EngineError(`steps must be an integer ≥ 0, got ${p.steps}`);
    const size = L * W_DIM;
    this.checkLen('real code', p.real, size);
    this.checkLen('fake code', p.fake, size);
    const session = await this.session('step');
    let t = composeCode(p.real, p.fake, layers, L);
    let m = new Float32Array(size);
    let v = new Float32Array(size);
    const mask = new Float32Array(L);
    for (let l = layers[0]; l < layers[1]; l++) mask[l] = 1;
    const milestones = lrMilestones(p.lrMilestones, p.steps);
    const losses: Array<[number, number, number]> = [];
    const stepMs: number[] = [];
    const fixed = {
      real: p.real,
      mask,
      target_id: p.targets.id,
      target_tokens: p.targets.tokens,
      margin: Float32Array.of(p.margin),
      lambda_id: Float32Array.of(p.lambdaId),
      lambda_attr: Float32Array.of(p.lambdaAttr),
    };
    for (let i = 0; i < p.steps; i++) {
      p.signal?.throwIfAborted();
      const t0 = performance.now();
      // MultiStepLR as FALCO steps it: scheduler.step() after each optimizer.step(), so update i uses
      // base·γ^(#milestones ≤ i).
      const lr = E.multiStepLR(p.lr, milestones, p.lrGamma, i);
      const [bc1, bc2] = E.adamBiasCorrections(i + 1, ADAM.betas);
      const out = await session.run({
        ...fixed,
        t,
        m,
        v,
        lr: Float32Array.of(lr),
        bc1: Float32Array.of(bc1),
        bc2: Float32Array.of(bc2),
      });
      const l: [number, number, number] = [
        out['loss']!.data[0]!,
        out['id_loss']!.data[0]!,
        out['attr_loss']!.data[0]!,
      ];
      if (!l.every(Number.isFinite))
        throw new EngineError(`optimisation diverged at step ${i}: loss ${l.join(', ')}`);
      losses.push(l);
      t = Float32Array.from(out['t_next']!.data);
      m = Float32Array.from(out['m_next']!.data);
      v = Float32Array.from(out['v_next']!.data);
      stepMs.push(performance.now() - t0);
      p.onStep?.(i, p.steps, l);
    }
    // Rows outside the mask are real by construction; compose again so nothing else can leak in.
    return { code: composeCode(p.real, t, layers, L), losses, stepMs };
  }

  /** Batch sizes of the bundle's batched step models (step_b{B}.onnx), ascending. */
  stepBatches(): number[] {
    return readdirSync(this.dir)
      .map((f) => /^step_b(\d+)\.onnx$/.exec(f)?.[1])
      .filter((b): b is string => b !== undefined)
      .map(Number)
      .filter((b) => b > 1)
      .sort((a, b) => a - b);
  }

  private batchSession(batch: number): Promise<E.Session> {
    let s = this.batchSessions.get(batch);
    if (!s) {
      const file = join(this.dir, stepBatchFile(batch));
      if (!existsSync(file))
        throw new EngineError(
          `bundle ${this.dir} has no step model for batches of ${batch} faces (${stepBatchFile(batch)}); it has ${
            this.stepBatches().join(', ') || 'none'
          }`,
        );
      s = E.Session.create(file, {
        // Unset: FALCO_PROVIDER decides, as for the other sessions (an explicit 'auto' here ignored it).
        ...(this.opts.provider ? { provider: this.opts.provider } : {}),
        arena: true,
        ...(this.opts.threads ? { threads: this.opts.threads } : {}),
        ...(this.opts.log ? { log: (m: string) => this.opts.log!(`step_b${batch}: ${m}`) } : {}),
      });
      s.catch(() => this.batchSessions.delete(batch));
      this.batchSessions.set(batch, s);
    }
    return s;
  }

  /**
   * `optimize` for several faces, B faces per step.onnx run. Each face keeps its own code, targets,
   * trainable rows, margin, λs, learning-rate schedule, step count and Adam state, and gets the result
   * a single-face `optimize` gives it (to float32 noise: batched kernels sum in another order). A face
   * whose steps are done is fed lr 0 (its code stays exactly where it is, its state is not taken back)
   * while the others go on; a last, partial group is padded with a frozen copy of its first face.
   * Without a batched model (or with batch 1) the faces run one after another.
   */
  async optimizeBatch(ps: OptimizeParams[], o: OptimizeBatchOptions = {}): Promise<OptimizeResult[]> {
    const batch = o.batch ?? this.stepBatches().at(-1) ?? 1;
    if (!Number.isInteger(batch) || batch < 1)
      throw new EngineError(`batch must be an integer ≥ 1, got ${o.batch}`);
    if (batch === 1 || ps.length < 2) {
      const out: OptimizeResult[] = [];
      for (const p of ps) out.push(await this.optimize(p));
      return out;
    }
    const session = await this.batchSession(batch);
    const out: OptimizeResult[] = [];
    for (let i = 0; i < ps.length; i += batch)
      out.push(...(await this.optimizeGroup(session, batch, ps.slice(i, i + batch))));
    return out;
  }

  private async optimizeGroup(
    session: E.Session,
    B: number,
    group: OptimizeParams[],
  ): Promise<OptimizeResult[]> {
    const L = this.L;
    const size = L * W_DIM;
    const faces = group.map((p) => {
      const layers = checkLayers(p.layers, this.manifest.trainableRange);
      if (!Number.isInteger(p.steps) || p.steps < 0)
        throw new EngineError(`steps must be an integer ≥ 0, got ${p.steps}`);
      this.checkLen('real code', p.real, size);
      this.checkLen('fake code', p.fake, size);
      return { p, layers, milestones: lrMilestones(p.lrMilestones, p.steps) };
    });
    // Padding slots repeat the first face at lr 0; their outputs are never read.
    const slots = Array.from({ length: B }, (_, b) => faces[b] ?? faces[0]!);
    const cat = (f: (s: (typeof slots)[number]) => Float32Array) => {
      const parts = slots.map(f);
      const res = new Float32Array(parts.reduce((n, x) => n + x.length, 0));
      let off = 0;
      for (const x of parts) {
        res.set(x, off);
        off += x.length;
      }
      return res;
    };
    const t = cat((s) => composeCode(s.p.real, s.p.fake, s.layers, L));
    const m = new Float32Array(B * size);
    const v = new Float32Array(B * size);
    const fixed = {
      real: cat((s) => s.p.real),
      mask: cat((s) => new Float32Array(L).map((_, l) => (l >= s.layers[0] && l < s.layers[1] ? 1 : 0))),
      target_id: cat((s) => s.p.targets.id),
      target_tokens: cat((s) => s.p.targets.tokens),
      margin: Float32Array.from(slots, (s) => s.p.margin),
      lambda_id: Float32Array.from(slots, (s) => s.p.lambdaId),
      lambda_attr: Float32Array.from(slots, (s) => s.p.lambdaAttr),
    };
    const results: OptimizeResult[] = faces.map(() => ({
      code: new Float32Array(0),
      losses: [],
      stepMs: [],
    }));
    const steps = Math.max(0, ...faces.map((f) => f.p.steps));
    for (let i = 0; i < steps; i++) {
      // As in `optimize`: an aborted job stops within one step (any face's signal stops the group).
      for (const f of faces) f.p.signal?.throwIfAborted();
      const t0 = performance.now();
      const active = slots.map((s, b) => b < faces.length && i < s.p.steps);
      const lr = Float32Array.from(slots, (s, b) =>
        active[b] ? E.multiStepLR(s.p.lr, s.milestones, s.p.lrGamma, i) : 0,
      );
      const bcs = slots.map((_, b) => E.adamBiasCorrections(active[b] ? i + 1 : 1, ADAM.betas));
      const outs = await session.run({
        ...fixed,
        t,
        m,
        v,
        lr,
        bc1: Float32Array.from(bcs, (c) => c[0]),
        bc2: Float32Array.from(bcs, (c) => c[1]),
      });
      const ms = performance.now() - t0;
      faces.forEach((f, b) => {
        if (!active[b]) return;
        const l: [number, number, number] = [
          outs['loss']!.data[b]!,
          outs['id_loss']!.data[b]!,
          outs['attr_loss']!.data[b]!,
        ];
        if (!l.every(Number.isFinite))
          throw new EngineError(`optimisation of face ${b} diverged at step ${i}: loss ${l.join(', ')}`);
        const at = b * size;
        t.set(outs['t_next']!.data.subarray(at, at + size), at);
        m.set(outs['m_next']!.data.subarray(at, at + size), at);
        v.set(outs['v_next']!.data.subarray(at, at + size), at);
        results[b]!.losses.push(l);
        results[b]!.stepMs.push(ms);
        f.p.onStep?.(i, f.p.steps, l);
      });
    }
    faces.forEach((f, b) => {
      results[b]!.code = composeCode(f.p.real, t.subarray(b * size, (b + 1) * size), f.layers, L);
    });
    return results;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values(), ...this.batchSessions.values()];
    this.sessions.clear();
    this.batchSessions.clear();
    for (const s of all) {
      try {
        await (await s).release();
      } catch {
        // a session that failed to open has nothing to release
      }
    }
  }
}
