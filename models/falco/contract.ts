/**
 * The ONNX models of a FALCO model bundle and their tensor names. The graph builders
 * (models/falco/graphs.ts) emit exactly these, and the runtime (engine, pool, pipeline) feeds them, so
 * both sides are written against this one file.
 *
 * Conventions: images are NCHW float32 RGB in [-1, 1] (the generator's range); W+ codes are
 * [B, L, 512] with L = numWLayers(resolution) (10 at 64 px, 14 at 256 px, 18 at 1024 px). B is the
 * number of faces a model takes at once (1 in a bundle's models; graphs.ts builds any B): every
 * per-face quantity has B as its leading axis, per-face scalars are [B] vectors.
 */

export const MODEL_FILES = {
  /** e4e: aligned face resized to 256 → W+ (codes + latent_avg). Forward only, once per face. */
  encoder: 'encoder.onnx',
  /** Original aligned face at the generator resolution → identity + attribute targets (once per face). */
  targets: 'targets.onnx',
  /** One FALCO optimization step: forward (G → ArcFace, FaRL) + backward + Adam, per face per step. */
  step: 'step.onnx',
  /** G(w): W+ → image, used for the final render and for the fake pool. */
  render: 'render.onnx',
  /** z → W+ with truncation ψ (fake pool sampling). */
  mapping: 'mapping.onnx',
} as const;

export type ModelName = keyof typeof MODEL_FILES;

/**
 * Optional step models for batches of B faces a bundle may carry next to step.onnx (the step's inputs
 * and outputs with a leading batch axis B; written by `models build --step-batch`, used by
 * FalcoEngine.optimizeBatch). Not listed in the manifest's required models.
 */
export const stepBatchFile = (batch: number): string => `step_b${batch}.onnx`;

/** Input and output names of each model (shapes in the comments; L = W+ layers, N = resolution). */
export const IO = {
  encoder: { inputs: ['image'] /* [1,3,256,256] */, outputs: ['wplus'] /* [1,L,512] */ },
  targets: {
    inputs: ['image'] /* [1,3,N,N] */,
    // id: ArcFace(id112(x)) [1,512] L2-normalised; tokens: FaRL tokens before ln_post [1,197,768];
    // farl: FaRL image embedding (CLIP normalisation → ln_post(cls) · proj) [1,512], L2-normalised, for
    // nearest-fake lookup by cosine similarity.
    outputs: ['id', 'tokens', 'farl'],
  },
  step: {
    // t: current code [B,L,512] (only rows with mask=1 are optimised); real: e4e code [B,L,512];
    // mask: [B,L,1] 1 for trainable layers; m, v: Adam moments [B,L,512]; lr, bc1, bc2: [B]
    // (bc1 = 1−β1^t, bc2 = √(1−β2^t), from adamBiasCorrections; lr 0 leaves a face where it is);
    // target_id [B,512]; target_tokens [B,197,768]; margin, lambda_id, lambda_attr: [B].
    inputs: [
      't',
      'real',
      'mask',
      'm',
      'v',
      'lr',
      'bc1',
      'bc2',
      'target_id',
      'target_tokens',
      'margin',
      'lambda_id',
      'lambda_attr',
    ],
    // Updated state, and the per-face loss terms evaluated at the input t (before the update), [B].
    outputs: ['t_next', 'm_next', 'v_next', 'loss', 'id_loss', 'attr_loss'],
  },
  render: { inputs: ['wp'] /* [1,L,512] */, outputs: ['image'] /* [1,3,N,N] */ },
  mapping: { inputs: ['z', 'psi'] /* [1,512], [] */, outputs: ['wp'] /* [1,L,512] */ },
} as const;

/** Adam settings baked into step.onnx (FALCO: torch.optim.Adam defaults). */
export const ADAM = { betas: [0.9, 0.999] as [number, number], eps: 1e-8 };

/** FALCO's defaults (anonymize.py): 50 steps, lr 0.01, ×0.8 at 75 % and 90 %, λ_id 10, λ_attr 0.1, m 0, layers 3..8. */
export const FALCO_DEFAULTS = {
  steps: 50,
  lr: 0.01,
  lrMilestones: [0.75, 0.9],
  lrGamma: 0.8,
  lambdaId: 10,
  lambdaAttr: 0.1,
  idMargin: 0,
  layers: [3, 8] as [number, number],
  truncation: 0.7,
};

/** Number of W+ layers of a StyleGAN2 generator at `resolution` (2·log2(R) − 2). */
export const numWLayers = (resolution: number): number => 2 * Math.log2(resolution) - 2;
