/**
 * Architecture of genforce's `StyleGAN2Generator` as FALCO builds it (config F, `skip` architecture,
 * constant input, fused modulation with demodulation, equalized learning rate, spatial noise from the
 * stored buffers, no final tanh). The key names and shapes below are the ones of the real checkpoints.
 *
 * Two levels: `arch(resolution)` is what only depends on the output resolution (blocks, W+ layers);
 * `GeneratorArch` adds the widths (channels per block, W / z dims, mapping depth), which the loader
 * infers from the weights (weights.ts) so a narrow demo generator runs through the same code as the
 * real one. `fullArch(resolution)` is the official full-size width rule (genforce fmaps_base 32768,
 * fmaps_max 512, 512-D latents, 8 mapping layers).
 */
export class StyleGAN2ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StyleGAN2ConfigError';
  }
}

export const RESOLUTIONS = [8, 16, 32, 64, 128, 256, 512, 1024] as const;
export const W_DIM = 512;
export const Z_DIM = 512;
export const MAPPING_LAYERS = 8;
export const MAPPING_LR_MUL = 0.01;
/** Demodulation epsilon of genforce's ModulateConvBlock (added to the squared norm). */
export const DEMOD_EPS = 1e-8;
/** Pixel-norm epsilon of the mapping network's input normalisation. */
export const PIXELNORM_EPS = 1e-8;
export const LRELU_SLOPE = 0.2;
/** genforce multiplies every leaky-ReLU output by √2 (gain that keeps activations' variance). */
export const LRELU_GAIN = Math.SQRT2;
/** FALCO samples its fake pool with ψ = 0.7 and genforce's `get_w` default of 18 truncated layers. */
export const FALCO_TRUNCATION_PSI = 0.7;
export const FALCO_TRUNCATION_LAYERS = 18;

const FMAPS_BASE = 32 << 10;
const FMAPS_MAX = 512;

export interface StyleGAN2Arch {
  resolution: number;
  /** Number of W+ layers (= synthesis layers + 1): 10 at 64 px, 14 at 256 px, 18 at 1024 px. */
  numWLayers: number;
  /** Resolutions of the synthesis blocks: 4, 8, ..., resolution. */
  blockResolutions: number[];
}

/** Channels of the FULL-SIZE generator's feature maps at resolution `res`. */
export const channelsAt = (res: number): number => Math.min(Math.floor(FMAPS_BASE / res), FMAPS_MAX);

/** The complete architecture: resolution-derived structure plus the widths. */
export interface GeneratorArch extends StyleGAN2Arch {
  /** Channels of the feature maps of each synthesis block (same order as `blockResolutions`). */
  channels: number[];
  /** Dimension of w (style inputs, W+ rows, mapping width). */
  wDim: number;
  /** Dimension of z (mapping input). */
  zDim: number;
  /** Number of dense layers of the mapping network. */
  mappingLayers: number;
}

/** The official full-size generator of a resolution. */
export function fullArch(resolution: number): GeneratorArch {
  const a = arch(resolution);
  return {
    ...a,
    channels: a.blockResolutions.map(channelsAt),
    wDim: W_DIM,
    zDim: Z_DIM,
    mappingLayers: MAPPING_LAYERS,
  };
}

/** "64 px, channels 4:64 8:64 ..., w 512, z 512, 8 mapping layers" for error messages. */
export function describeArch(a: GeneratorArch): string {
  const ch = a.blockResolutions.map((r, b) => `${r}:${a.channels[b]}`).join(' ');
  return `${a.resolution} px, channels ${ch}, w ${a.wDim}, z ${a.zDim}, ${a.mappingLayers} mapping layers`;
}

export function arch(resolution: number): StyleGAN2Arch {
  if (!(RESOLUTIONS as readonly number[]).includes(resolution))
    throw new StyleGAN2ConfigError(
      `unsupported StyleGAN2 resolution ${resolution}; expected one of ${RESOLUTIONS.join(', ')}`,
    );
  const log2 = Math.log2(resolution);
  const blockResolutions: number[] = [];
  for (let r = 4; r <= resolution; r *= 2) blockResolutions.push(r);
  return { resolution, numWLayers: (log2 - 1) * 2, blockResolutions };
}

/**
 * Every key of the generator's state dict with its shape (`[]` = 0-d scalar), for the full-size
 * generator of a resolution or for an explicit (e.g. inferred) architecture.
 */
export function expectedKeys(resolutionOrArch: number | GeneratorArch): Map<string, number[]> {
  const a = typeof resolutionOrArch === 'number' ? fullArch(resolutionOrArch) : resolutionOrArch;
  const W = a.wDim;
  const ch = (b: number) => a.channels[b]!;
  const keys = new Map<string, number[]>();
  for (let i = 0; i < a.mappingLayers; i++) {
    keys.set(`mapping.dense${i}.weight`, [W, i === 0 ? a.zDim : W]);
    keys.set(`mapping.dense${i}.bias`, [W]);
  }
  keys.set('truncation.w_avg', [W]);
  keys.set('synthesis.early_layer.const', [1, ch(0), 4, 4]);
  a.blockResolutions.forEach((res, b) => {
    const cout = ch(b);
    const conv = (idx: number, cin: number, up: boolean) => {
      const p = `synthesis.layer${idx}`;
      keys.set(`${p}.weight`, [cout, cin, 3, 3]);
      keys.set(`${p}.bias`, [cout]);
      keys.set(`${p}.noise_strength`, []);
      keys.set(`${p}.noise`, [1, 1, res, res]);
      if (up) keys.set(`${p}.filter.kernel`, [1, 1, 4, 4]);
      keys.set(`${p}.style.weight`, [cin, W]);
      keys.set(`${p}.style.bias`, [cin]);
    };
    if (b > 0) conv(2 * b - 1, ch(b - 1), true);
    conv(2 * b, cout, false);
    const p = `synthesis.output${b}`;
    keys.set(`${p}.weight`, [3, cout, 1, 1]);
    keys.set(`${p}.bias`, [3]);
    keys.set(`${p}.style.weight`, [cout, W]);
    keys.set(`${p}.style.bias`, [cout]);
  });
  keys.set('synthesis.upsample.kernel', [1, 1, 4, 4]);
  return keys;
}
