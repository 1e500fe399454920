/**
 * Face detection + 68-point landmarks on a decoded photo: face-api's SSD MobileNetV1 and FaceLandmark68Net,
 * ported to our ONNX engine (models/faceapi), forward only.
 *
 * One SSD pass sees the whole photo squeezed into 512×512, so a face narrower than ~1/12 of the photo's long
 * side shrinks below what the net was trained on, and a face turned more than ~45° is not a face to it. A
 * missed face is a face published un-anonymized, so `detect` runs several passes and merges them:
 * - a pyramid: from the scale where the smallest face the mode promises is the plan's `inputFace` px wide in the
 *   net's input down to the whole photo in ×2 steps, each level cut into overlapping 512-px tiles
 *   (down-scaling is area-averaged by sharp first, so fine detail does not alias away); tiles without any
 *   contrast are skipped (`isFlat`);
 * - orientations: the same on the photo turned 90°, 180° and 270° (coarser levels only, per mode), and on the
 *   photo turned ±45° for faces tilted between the quarter turns (`tiltedPasses`);
 * - merging: greedy by score, a box is dropped when it overlaps a kept one (IoU > 0.4) or lies mostly inside it
 *   (a face cut by a tile edge, or found again at another scale or rotation).
 * Each merged face's landmarks are computed in the quarter turn under which that face is upright, chosen from
 * its own landmarks (`uprightFrame`), not from the pass that found it, and mapped back.
 * - score fusion ('default', 'thorough'): the SSD scores occluded, blurred and tilted faces low, so upright
 *   candidates down to WEAK_SCORE are kept and stand if a second detector family (BlazeFace,
 *   models/blazeface) confirms them and the landmark net draws a consistent face there (`verifyWeak`);
 * - proposals ('default', 'thorough'): some occluded faces the SSD does not score at all, so BlazeFace also runs
 *   as a detector of its own, and what it finds stands only on three votes, FaceMesh's face flag
 *   (models/facemesh) among them (`blazeProposals`).
 */
import sharp from 'sharp';
import {
  BLAZEFACE_INPUT,
  BlazeFace,
  centredCrop,
  type BlazeFaceOptions,
} from '../../models/blazeface/index.js';
import { FaceMesh } from '../../models/facemesh/index.js';
import { FaceApi, nonMaxSuppression, type FaceApiOptions } from '../../models/faceapi/index.js';
import { SSD_INPUT } from '../../models/faceapi/nets.js';
import type { Point } from './align.js';
import type { RgbImage } from './image-io.js';
import { landmarkInconsistency } from './face-method.js';
import { InputError, type Box, type FaceConfirmation } from './types.js';

/**
 * `fast`: upright only, faces down to 48 px. `default`: faces down to 24 px upright (measured on 22 faces:
 * 21/22 at 16 px, 22/22 at 20 px) and 96 px in any quarter turn. `thorough` (the residual scan, high recall):
 * 16 px upright and 24 px turned. Figures: `npm run bench -- coverage`.
 */
export const DETECT_MODES = ['single', 'fast', 'default', 'thorough'] as const;
export type DetectMode = (typeof DETECT_MODES)[number];
export type Rotation = 0 | 90 | 180 | 270;

interface Plan {
  /** Smallest face width (original pixels) the upright pyramid reaches. */
  minFace: number;
  /** Same for the 90/180/270 passes (Infinity: no turned passes). */
  minFaceTurned: number;
  /**
   * Least score kept from the turned passes (raised above `scoreThreshold` if higher): turned views of knees,
   * hands and folds fool the SSD more often than upright ones (sample1 turned 180° gives a 0.61 "face").
   * The same bar in every mode: the residual scan ('thorough') on sample1 pixelated two non-faces, both from
   * turned passes (0.62 at 90°, 0.61 at 180°), while every face it found that detection had missed (11/11
   * 16-px faces on the size-16 scene) came from an upright pass.
   */
  turnedScore: number;
  /**
   * Width in the SSD input at which the pyramid's finest level samples a `minFace` face (at least
   * RELIABLE_INPUT_FACE). `default` uses 40: on the 12-MP coverage scenes (22 faces each) 32 found 21/22 faces
   * at 24 px and 20/22 at 32 px (249 passes); 40 found 22/22 and 21/22 (377 passes). The SSD's score of a
   * small face keeps rising up to ~50 input px (the 32-px faces, centred: 14/22 above 0.5 at 33 px, 21/22 at
   * 43 px, 22/22 at 50 px).
   */
  inputFace: number;
  /** Whether SSD candidates between WEAK_SCORE and the threshold are kept when BlazeFace confirms them. */
  confirmWeak: boolean;
  /** Smallest face the ±45° passes look for (Infinity: no such passes; `tiltedPasses`). */
  minFaceTilted: number;
  /**
   * Smallest face BlazeFace looks for as a detector of its own, for faces the SSD does not see (Infinity: none;
   * `blazeProposals`).
   */
  minFaceProposed: number;
}

const PLANS: Record<DetectMode, Plan> = {
  // face-api's own behaviour: one upright pass over the whole photo (what its landmark net was validated on).
  single: {
    minFace: Number.MAX_VALUE,
    minFaceTurned: Infinity,
    turnedScore: 0.7,
    inputFace: 32,
    confirmWeak: false,
    minFaceTilted: Infinity,
    minFaceProposed: Infinity,
  },
  fast: {
    minFace: 48,
    minFaceTurned: Infinity,
    turnedScore: 0.7,
    inputFace: 32,
    confirmWeak: false,
    minFaceTilted: Infinity,
    minFaceProposed: Infinity,
  },
  default: {
    minFace: 24,
    minFaceTurned: 96,
    turnedScore: 0.7,
    inputFace: 40,
    confirmWeak: true,
    minFaceTilted: 96,
    minFaceProposed: 64,
  },
  // 32: on the size-16 scene the residual scan in this mode found all 11 faces detection had missed (22/22).
  thorough: {
    minFace: 16,
    minFaceTurned: 24,
    turnedScore: 0.7,
    inputFace: 32,
    confirmWeak: true,
    minFaceTilted: 48,
    minFaceProposed: 64,
  },
};

/** The SSD passes `detect` runs on a width×height photo in `mode` (each one 512×512 input). */
export function plannedPasses(width: number, height: number, mode: DetectMode): number {
  const plan = PLANS[mode];
  let n = 0;
  for (const angle of [0, 90, 180, 270]) {
    const minFace = angle === 0 ? plan.minFace : plan.minFaceTurned;
    if (!Number.isFinite(minFace)) continue;
    const [fw, fh] = angle % 180 ? [height, width] : [width, height];
    for (const s of pyramid(fw, fh, minFace, plan.inputFace)) n += tiles(fw * s, fh * s).length;
  }
  if (Number.isFinite(plan.minFaceTilted)) {
    // Upper bound: the turned canvas's black corners are skipped as flat tiles when run.
    for (const tilt of TILTS) {
      const [fw, fh] = tiltedSize(width, height, tilt);
      for (const s of pyramid(fw, fh, plan.minFaceTilted, plan.inputFace)) n += tiles(fw * s, fh * s).length;
    }
  }
  return n;
}

/** Face width in the SSD's 512-px input above which it finds faces reliably (measured on the scenes). */
const RELIABLE_INPUT_FACE = 32;
/** Tile overlap in input pixels: every face up to this size lies whole in some tile of its level. */
const TILE_OVERLAP = 128;

export interface DetectFacesOptions {
  /** Minimum detector score in (0, 1). Default 0.5 (face-api's default minConfidence). */
  scoreThreshold?: number;
  /**
   * Smallest face kept, in pixels of the shorter box side. Default 0: every detected face is kept, because a
   * face that is skipped is a face that is published un-anonymized.
   */
  minFaceSize?: number;
  /** At most this many faces (highest scores). Default 100. */
  maxFaces?: number;
  /** Search effort (see DETECT_MODES). Default 'default'. */
  mode?: DetectMode;
}

export interface DetectedFace {
  /** 0-based, in descending score order. */
  index: number;
  /** Detector box, continuous pixel coordinates. */
  box: Box;
  score: number;
  /** 68 iBUG points, continuous pixel coordinates. */
  landmarks: Point[];
  /**
   * Clockwise quarter turn of the photo under which this face is upright (its "up" is this far from the
   * photo's), chosen from the face's own landmarks (`uprightFrame`); `landmarks` were computed in that frame.
   */
  angle: Rotation;
  /**
   * Pyramid scale of the pass that found the face (input pixels per photo pixel), whether it was a tile of
   * the level, and that pass's turn (which may differ from `angle`, the turn under which the face is upright).
   */
  source: {
    scale: number;
    tiled: boolean;
    foundAt: Rotation;
    /** Set when a ±45° pass found the face (`tiltedPasses`): that pass's turn in degrees, clockwise. */
    tilt?: number;
    /**
     * Set when the SSD scored the face below the detection threshold and the second detector family
     * confirmed it (`verifyWeak`): BlazeFace's probability at the box. `faceMesh` is set, and `score` is 0,
     * when the SSD did not see the face at all and BlazeFace found it (`blazeProposals`): FaceMesh's face flag.
     */
    confirmedBy?: FaceConfirmation;
  };
}

function checkOptions(o: DetectFacesOptions): Required<DetectFacesOptions> {
  const scoreThreshold = o.scoreThreshold ?? 0.5;
  const minFaceSize = o.minFaceSize ?? 0;
  const maxFaces = o.maxFaces ?? 100;
  const mode = o.mode ?? 'default';
  if (!DETECT_MODES.includes(mode)) {
    throw new InputError(
      'invalid-options',
      `mode must be one of ${DETECT_MODES.join(', ')}, got ${String(mode)}`,
    );
  }
  if (!(scoreThreshold > 0 && scoreThreshold < 1)) {
    throw new InputError('invalid-options', `scoreThreshold must be in (0, 1), got ${scoreThreshold}`);
  }
  if (!(minFaceSize >= 0 && Number.isFinite(minFaceSize))) {
    throw new InputError(
      'invalid-options',
      `minFaceSize must be a non-negative number of pixels, got ${minFaceSize}`,
    );
  }
  if (!(Number.isInteger(maxFaces) && maxFaces >= 1 && maxFaces <= 1000)) {
    throw new InputError('invalid-options', `maxFaces must be an integer in 1..1000, got ${maxFaces}`);
  }
  return { scoreThreshold, minFaceSize, maxFaces, mode };
}

/**
 * SSD candidates down to this score are kept as *weak* in the modes that confirm them ('default', 'thorough'):
 * a weak candidate becomes a face only if BlazeFace, a second detector family, also sees a face there
 * (`verifyWeak`). Measured on the coverage scenes (22 faces per bucket, default mode): of the faces the SSD
 * leaves under 0.5, those in the occlusion, blur and ±30° buckets mostly score 0.2–0.5; the candidates at that
 * score on face-free images are few (1 on 26) and BlazeFace does not confirm them.
 */
export const WEAK_SCORE = 0.2;
/** BlazeFace probability at a weak candidate's box that confirms it as a face. */
export const CONFIRM_SCORE = 0.5;
/**
 * Most `landmarkInconsistency` (in the face's upright frame) of a confirmed weak candidate. Measured on the
 * candidates BlazeFace confirmed in the rot±30, blur, occlusion and texture buckets: the 8 real faces
 * 0.036–0.100, the 4 non-faces (a dark fold, a blurred hand twice, a texture block) 0.129–0.248.
 */
export const CONFIRM_INCONSISTENCY = 0.115;

export interface FaceDetectorOptions {
  /**
   * The second detector that confirms weak SSD candidates (default: BlazeFace from the installed
   * human-models, same threads/provider); the detector closes it. `false`: SSD only (weak candidates are
   * dropped).
   */
  confirm?: BlazeFace | false;
  /**
   * The third vote on faces BlazeFace finds where the SSD sees nothing (default: FaceMesh's face flag from the
   * installed human-models, same threads/provider); the detector closes it. `false` (or `confirm: false`): no
   * BlazeFace proposals.
   */
  mesh?: FaceMesh | false;
  /** `false`: no ±45° passes in any mode (the A/B control of `tiltedPasses`). Default true. */
  tilted?: boolean;
}

/** Owns the detector/landmark sessions; create once per process and reuse. */
export class FaceDetector {
  readonly models: FaceApi;
  private readonly owned: boolean;
  private readonly confirmer: BlazeFace | null;
  private readonly mesh: FaceMesh | null;
  private readonly tilted: boolean;

  constructor(models?: FaceApi | FaceApiOptions, options: FaceDetectorOptions = {}) {
    this.owned = !(models instanceof FaceApi);
    this.models = models instanceof FaceApi ? models : new FaceApi(models);
    this.confirmer =
      options.confirm === false
        ? null
        : (options.confirm ?? new BlazeFace(models instanceof FaceApi ? {} : pickEngine(models)));
    this.tilted = options.tilted ?? true;
    this.mesh =
      options.mesh === false || this.confirmer === null
        ? null
        : (options.mesh ?? new FaceMesh(models instanceof FaceApi ? {} : pickEngine(models)));
  }

  async detect(image: RgbImage, options: DetectFacesOptions = {}): Promise<DetectedFace[]> {
    const opts = checkOptions(options);
    const plan = PLANS[opts.mode];
    const candidates: Candidate[] = [];
    const sources = new SourceCache(image);
    const gain = exposureGain(image);
    const confirm = plan.confirmWeak && this.confirmer !== null;
    for (const angle of [0, 90, 180, 270] as const) {
      const minFace = angle === 0 ? plan.minFace : plan.minFaceTurned;
      if (!Number.isFinite(minFace)) continue;
      const minScore =
        angle !== 0
          ? Math.max(opts.scoreThreshold, plan.turnedScore)
          : confirm
            ? Math.min(opts.scoreThreshold, WEAK_SCORE)
            : opts.scoreThreshold;
      const [fw, fh] = angle % 180 ? [image.height, image.width] : [image.width, image.height];
      const scales = pyramid(fw, fh, minFace, plan.inputFace);
      for (const scale of scales) {
        const src = await sources.at(scale);
        const lw = fw * scale;
        const lh = fh * scale;
        for (const tile of tiles(lw, lh)) {
          const input = renderTile(src, image, angle, scale, tile.x, tile.y, gain);
          if (isFlat(input)) continue;
          for (const { fb, score } of await this.tileFaces(input, tile, lw, lh, scale, scale !== scales[0], {
            maxFaces: opts.maxFaces,
            minScore,
          })) {
            const box = clip(unturnBox(fb, angle, image.width, image.height), image.width, image.height);
            if (!box) continue;
            candidates.push({ box, score, angle, scale, tiled: tile.count > 1 });
          }
        }
      }
    }
    const mergedSsd = mergeCandidates(candidates);
    const merged: Proposed[] = await this.verifyWeak(mergedSsd, opts.scoreThreshold, image, gain);
    if (this.tilted && Number.isFinite(plan.minFaceTilted)) {
      const tilted = await this.tiltedPasses(image, sources, gain, plan, opts, confirm);
      merged.push(...(await this.verifyTilted(tilted, merged, image, gain, opts.scoreThreshold, plan)));
    }
    if (confirm && this.mesh && Number.isFinite(plan.minFaceProposed)) {
      merged.push(
        ...(await this.blazeProposals(image, sources, gain, plan.minFaceProposed, mergedSsd, merged)),
      );
    }
    const faces: DetectedFace[] = [];
    for (const c of merged.slice(0, opts.maxFaces)) {
      if (Math.min(c.box.width, c.box.height) < opts.minFaceSize) continue;
      // The SSD scores a face turned by a quarter nearly as high as an upright one (measured: the frame with
      // the best SSD score is not the upright one for 4–10 of the 22 sample faces), so the frame the face was
      // found in says little about which way is up. The face's own landmarks do: see `uprightFrame`.
      const frame =
        opts.mode === 'single' ? null : (c.frame ?? (await uprightFrame(this.models, image, c.box, c.angle)));
      const angle = frame?.angle ?? c.angle;
      const landmarks = frame?.landmarks ?? (await landmarksInTurn(this.models, image, c.box, angle));
      if (!landmarks) continue;
      faces.push({
        index: faces.length,
        box: { ...c.box },
        score: c.score,
        landmarks,
        angle,
        source: {
          scale: c.scale,
          tiled: c.tiled,
          foundAt: c.angle,
          ...(c.tilt !== undefined ? { tilt: c.tilt } : {}),
          ...(c.confirmedBy !== undefined
            ? {
                confirmedBy: {
                  detector: 'blazeface' as const,
                  score: c.confirmedBy,
                  ...(c.faceFlag !== undefined ? { faceMesh: c.faceFlag } : {}),
                },
              }
            : {}),
        },
      });
    }
    return faces;
  }

  /**
   * The SSD's faces in one 512×512 input (tile (tile.x, tile.y) of a lw×lh level at `scale`), as boxes of the
   * level's frame in frame pixels (÷ scale). A box touching an edge shared with a neighbouring tile is a face cut
   * by the tiling: a face up to TILE_OVERLAP lies whole in the neighbour, a larger one is found at a coarser
   * level. Likewise a face wider than TILE_OVERLAP at a finer level (`finer`) belongs to a coarser one, where it
   * is whole and at a size the net knows (here it comes out as half-face boxes: a forehead, a chin).
   */
  private async tileFaces(
    input: Float32Array,
    tile: { x: number; y: number },
    lw: number,
    lh: number,
    scale: number,
    finer: boolean,
    o: { maxFaces: number; minScore: number },
  ): Promise<Array<{ fb: FrameBox; score: number }>> {
    const { boxes, scores } = await this.models.ssdDecoded(input);
    const out: Array<{ fb: FrameBox; score: number }> = [];
    for (const i of nonMaxSuppression(boxes, scores, o.maxFaces, 0.5, o.minScore)) {
      // Tile-relative [ymin, xmin, ymax, xmax] → level → frame.
      const q = (k: number) => boxes[i * 4 + k] * SSD_INPUT;
      const E = 2;
      if (
        (finer && Math.max(q(2) - q(0), q(3) - q(1)) > TILE_OVERLAP) ||
        (tile.x > 0 && q(1) <= E) ||
        (tile.y > 0 && q(0) <= E) ||
        (tile.x + SSD_INPUT < lw - 0.5 && q(3) >= SSD_INPUT - E) ||
        (tile.y + SSD_INPUT < lh - 0.5 && q(2) >= SSD_INPUT - E)
      ) {
        continue;
      }
      out.push({
        fb: {
          x0: (tile.x + Math.max(0, q(1))) / scale,
          y0: (tile.y + Math.max(0, q(0))) / scale,
          x1: (tile.x + Math.min(SSD_INPUT, q(3))) / scale,
          y1: (tile.y + Math.min(SSD_INPUT, q(2))) / scale,
        },
        score: scores[i]!,
      });
    }
    return out;
  }

  /**
   * The SSD on the photo turned ±45° (TILTS): the quarter turns leave faces tilted ~45° from every frame they
   * try, and the SSD does not see a face turned more than ~30° (a face looking down, in a photo turned 30°: 0.00
   * upright, 0.83 in the −45° pass). Each level of the pyramid is the down-scaled photo turned by sharp (the
   * corners outside the photo are black and skipped as flat); a box found there is mapped back corner by corner
   * and the photo box is their bounding box (it covers the tilted face whole). Candidates from WEAK_SCORE up
   * (from the threshold when nothing confirms weak ones), merged among themselves.
   */
  private async tiltedPasses(
    image: RgbImage,
    sources: SourceCache,
    gain: number,
    plan: Plan,
    opts: Required<DetectFacesOptions>,
    confirm: boolean,
  ): Promise<Candidate[]> {
    const minScore = confirm ? Math.min(opts.scoreThreshold, WEAK_SCORE) : opts.scoreThreshold;
    const out: Candidate[] = [];
    for (const tilt of TILTS) {
      const [fw, fh] = tiltedSize(image.width, image.height, tilt);
      const scales = pyramid(fw, fh, plan.minFaceTilted, plan.inputFace);
      for (const scale of scales) {
        const { level, toPhoto } = await tiltedLevel(image, await sources.at(scale), scale, tilt);
        const grid = tiles(level.width, level.height);
        for (const tile of grid) {
          const input = renderTile(level, level, 0, 1, tile.x, tile.y, gain);
          if (isFlat(input)) continue;
          const found = await this.tileFaces(input, tile, level.width, level.height, 1, scale !== scales[0], {
            maxFaces: opts.maxFaces,
            minScore,
          });
          for (const { fb, score } of found) {
            const corners = [
              toPhoto(fb.x0, fb.y0),
              toPhoto(fb.x1, fb.y0),
              toPhoto(fb.x0, fb.y1),
              toPhoto(fb.x1, fb.y1),
            ];
            const xs = corners.map((c) => c[0]);
            const ys = corners.map((c) => c[1]);
            const box = clip(
              {
                x: Math.min(...xs),
                y: Math.min(...ys),
                width: Math.max(...xs) - Math.min(...xs),
                height: Math.max(...ys) - Math.min(...ys),
              },
              image.width,
              image.height,
            );
            if (box) out.push({ box, score, angle: 0, scale, tiled: grid.length > 1, tilt });
          }
        }
      }
    }
    return mergeCandidates(out);
  }

  /**
   * Which ±45° finds stand: none that overlaps a face already kept (the upright and quarter-turn passes find
   * most faces, with tighter boxes; a tilted pass's box is the bounding box of a turned one). Then the same
   * bars as a quarter-turn pass: `turnedScore` on the SSD's score alone, and between WEAK_SCORE and that the
   * two votes of `verifyWeak` (BlazeFace at the box, landmark consistency).
   */
  private async verifyTilted(
    tilted: Candidate[],
    kept: readonly Proposed[],
    image: RgbImage,
    gain: number,
    threshold: number,
    plan: Plan,
  ): Promise<Proposed[]> {
    const bar = Math.max(threshold, plan.turnedScore);
    const out: Proposed[] = [];
    for (const c of tilted) {
      if ([...kept, ...out].some((k) => overlapsFace(c.box, k.box))) continue;
      if (c.score >= bar) {
        out.push(c);
        continue;
      }
      if (!plan.confirmWeak) continue;
      const confirmed = await this.confirmWeak(c, image, gain);
      if (confirmed) out.push(confirmed);
    }
    return out;
  }

  /**
   * Score fusion: merged candidates at or above `threshold` stand on the SSD's score. A weaker one stands only
   * if BlazeFace, the second detector family, scores a face at the same box (≥ CONFIRM_SCORE) *and* the
   * landmark net draws a consistent face there in its upright frame (≤ CONFIRM_INCONSISTENCY), and it does not
   * overlap a face already kept (`overlapsFace`: a chin, forehead or head box of a found face is not a second
   * face; the size-64 scene had one such duplicate).
   * The frame found on the way is handed on so `detect` does not compute it again.
   */
  private async verifyWeak(
    merged: Candidate[],
    threshold: number,
    image: RgbImage,
    gain: number,
  ): Promise<Proposed[]> {
    const strong = merged.filter((c) => c.score >= threshold);
    if (!this.confirmer) return strong;
    const out: Proposed[] = [...strong];
    for (const c of merged) {
      if (c.score >= threshold) continue;
      if (out.some((k) => overlapsFace(c.box, k.box))) continue;
      const confirmed = await this.confirmWeak(c, image, gain);
      if (confirmed) out.push(confirmed);
    }
    return out;
  }

  /**
   * The two votes on a weak candidate (an SSD find under its bar, upright or ±45°): BlazeFace at the box
   * (≥ CONFIRM_SCORE) and the landmark net's consistency in the face's upright frame (≤ CONFIRM_INCONSISTENCY).
   * The candidate with what confirmed it, or null (always null without a confirmer).
   */
  private async confirmWeak(c: Candidate, image: RgbImage, gain: number): Promise<Proposed | null> {
    if (!this.confirmer) return null;
    const p = await this.confirmer.scoreAt(image, c.box, gain);
    if (p < CONFIRM_SCORE) return null;
    const frame = await uprightFrame(this.models, image, c.box, c.angle);
    return frame && frame.inconsistency <= CONFIRM_INCONSISTENCY ? { ...c, confirmedBy: p, frame } : null;
  }

  /**
   * Faces the SSD does not see at all (0.00 under a bar over the eyes or a mask: 4 of the 44 occluded sample
   * faces). BlazeFace runs as a detector of its own over a pyramid of 256-px tiles, for faces of at least
   * `minFace` px (9 ms CPU a pass; 3 MP: ~60 passes, 12 MP: ~1000). Each of its finds that no SSD candidate
   * explains must pass three votes: BlazeFace again, on the crop centred on it; FaceMesh's face flag; and the
   * landmark net's consistency in the face's upright frame. BlazeFace alone, and BlazeFace with the landmark
   * vote, accept hands, clothing folds and badges (see PROPOSAL_FACE_FLAG); the face flag is what rejects
   * them. Such faces report SSD score 0 and `confirmedBy` with the face flag.
   */
  private async blazeProposals(
    image: RgbImage,
    sources: SourceCache,
    gain: number,
    minFace: number,
    ssd: readonly Candidate[],
    kept: ReadonlyArray<{ box: Box }>,
  ): Promise<Proposed[]> {
    const mesh = this.mesh!;
    const confirmer = this.confirmer!;
    const n = BLAZEFACE_INPUT;
    const props: Array<{ box: Box; score: number; scale: number; tiled: boolean }> = [];
    for (const scale of blazePyramid(image.width, image.height, minFace)) {
      const src = await sources.at(scale);
      const f = src.width / image.width; // source pixels per photo pixel
      const lw = image.width * scale;
      const lh = image.height * scale;
      const grid = blazeTiles(lw, lh);
      for (const t of grid) {
        // Tile (t.x, t.y, n×n) of the level, as source pixels.
        const k = f / scale;
        const input = centredCrop(src, (t.x + n / 2) * k, (t.y + n / 2) * k, n * k, gain);
        const { scores, boxes } = await confirmer.run(input);
        for (let i = 0; i < scores.length; i++) {
          if (scores[i]! < BLAZE_PROPOSAL_SCORE) continue;
          const [cx, cy, w, h] = [boxes[i * 4]!, boxes[i * 4 + 1]!, boxes[i * 4 + 2]!, boxes[i * 4 + 3]!];
          if (!(w > 4 && h > 4)) continue;
          // A box cut by an edge shared with a neighbouring tile is whole there (faces up to the overlap).
          const E = 2;
          if (
            (t.x > 0 && cx - w / 2 <= E) ||
            (t.y > 0 && cy - h / 2 <= E) ||
            (t.x + n < lw - 0.5 && cx + w / 2 >= n - E) ||
            (t.y + n < lh - 0.5 && cy + h / 2 >= n - E)
          )
            continue;
          // BlazeFace's box is a tight square on the inner face; the SSD's (which the landmark net and every
          // later step expect) is as wide, 1.3× as tall and centred 0.1 width higher (measured on the samples).
          const box = clip(
            {
              x: (t.x + cx - w / 2) / scale,
              y: (t.y + cy - 0.1 * w - 0.65 * w) / scale,
              width: w / scale,
              height: (1.3 * w) / scale,
            },
            image.width,
            image.height,
          );
          if (box && Math.max(box.width, box.height) >= minFace / 2)
            props.push({ box, score: scores[i]!, scale, tiled: grid.length > 1 });
        }
      }
    }
    const out: Proposed[] = [];
    for (const p of mergeCandidates(props)) {
      if (
        ssd.some((c) => overlapsFace(p.box, c.box)) ||
        [...kept, ...out].some((k) => overlapsFace(p.box, k.box))
      )
        continue;
      // Cheapest vote first: BlazeFace re-centred (one pass), the face flag (one pass), the landmark frame vote
      // (16 landmark-net passes).
      const q = await confirmer.scoreAt(image, p.box, gain);
      if (q < PROPOSAL_CONFIRM_SCORE) continue;
      const flag = await mesh.scoreAt(image, p.box, 0, gain);
      if (flag < PROPOSAL_FACE_FLAG) continue;
      const frame = await uprightFrame(this.models, image, p.box, 0);
      if (!frame || frame.inconsistency > PROPOSAL_INCONSISTENCY) continue;
      out.push({
        box: p.box,
        score: 0,
        angle: 0,
        scale: p.scale,
        tiled: p.tiled,
        confirmedBy: q,
        faceFlag: flag,
        frame,
      });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.owned) await this.models.close();
    await this.confirmer?.close();
    await this.mesh?.close();
  }
}

/** BlazeFace probability at which one of its own detections (a tile of its pyramid) is put to the votes. */
const BLAZE_PROPOSAL_SCORE = 0.6;
/**
 * The three votes on a BlazeFace proposal (`blazeProposals`). Measured on the 2000×1500 coverage scenes (full,
 * occlusions, rot±30, blur, face-free backgrounds; 44 proposals BlazeFace re-centred at ≥ 0.5, 4 of them real
 * faces the SSD missed):
 * - BlazeFace re-centred: real faces 0.69–0.76; non-faces 0.50–0.85, so on its own it separates nothing;
 * - landmark inconsistency: real 0.098–0.129, non-faces 0.045–0.229 (a blurred badge 0.045): nothing either;
 * - FaceMesh's face flag: non-faces 0.00–0.28 but for three (a blurred badge 0.98, a blurred sleeve 0.67, a
 *   hand 0.73); real faces 1.00 (a tilted face, bar over the eyes), 0.67 (a face looking down, turned 30°),
 *   0.04 and 0.01 (a tilted face with a mask, a profile with a bar).
 * Together, at these bars, they accept the one face with flag 1.00 and none of the non-faces (the badge fails
 * the BlazeFace bar: 0.51). The other three real faces stay missed: recall under heavy occlusion is bounded by
 * what these detectors see, not by the votes.
 */
const PROPOSAL_CONFIRM_SCORE = 0.6;
const PROPOSAL_FACE_FLAG = 0.9;
const PROPOSAL_INCONSISTENCY = 0.15;

/** A face candidate that stands, with what confirmed it (a weak SSD candidate or a BlazeFace proposal). */
type Proposed = Candidate & { confirmedBy?: number; faceFlag?: number; frame?: Frame };

/**
 * Scales of BlazeFace's pyramid, descending from the one where a `minFace` face is 64 input px (BlazeFace's
 * short-range model scores 40–160-px faces in its 256 input best; measured 0.7–0.97 at 64 and 102 px) by ×2
 * steps until the photo fits one input. Never above 1: small faces are the SSD pyramid's job.
 */
export function blazePyramid(width: number, height: number, minFace: number): number[] {
  const out: number[] = [];
  let s = Math.min(1, 64 / minFace);
  for (;;) {
    out.push(s);
    if (Math.max(width, height) * s <= BLAZEFACE_INPUT) return out;
    s /= 2;
  }
}

/** 256-px tiles over a level, overlapping by half a tile (a face up to 128 input px is whole in one). */
function blazeTiles(lw: number, lh: number): Array<{ x: number; y: number }> {
  const n = BLAZEFACE_INPUT;
  const axis = (len: number) => {
    if (len <= n) return [0];
    const k = Math.ceil((len - n) / (n / 2)) + 1;
    return Array.from({ length: k }, (_, i) => ((len - n) * i) / (k - 1));
  };
  const out: Array<{ x: number; y: number }> = [];
  for (const y of axis(lh)) for (const x of axis(lw)) out.push({ x, y });
  return out;
}

/**
 * Whether weak box `c` is another view of kept face `k`: its centre lies in `k`, or they share more than 30 % of
 * the smaller box (mergeCandidates' rule for equals is 0.4 IoU / 70 %; a weak box gets a stricter one).
 */
function overlapsFace(c: Box, k: Box): boolean {
  const cx = c.x + c.width / 2;
  const cy = c.y + c.height / 2;
  if (cx >= k.x && cx <= k.x + k.width && cy >= k.y && cy <= k.y + k.height) return true;
  return intersectionArea(c, k) > 0.3 * Math.min(c.width * c.height, k.width * k.height);
}

/** Area shared by two boxes (0 when they do not overlap). */
function intersectionArea(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  return ix * iy;
}

function pickEngine(o: FaceApiOptions | undefined): BlazeFaceOptions {
  return {
    ...(o?.threads ? { threads: o.threads } : {}),
    ...(o?.provider ? { provider: o.provider } : {}),
  };
}

// ---------------------------------------------------------------- passes, tiles, geometry

interface FrameBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

type Frame = NonNullable<Awaited<ReturnType<typeof uprightFrame>>>;

interface Candidate {
  box: Box;
  score: number;
  angle: Rotation;
  scale: number;
  tiled: boolean;
  /** Set when a ±45° pass found it (`tiltedPasses`): that pass's turn, degrees clockwise. */
  tilt?: number;
}

/** The in-between turns of `tiltedPasses`, degrees clockwise (sharp's convention). */
const TILTS = [-45, 45] as const;

/** Size of the frame of a w×h photo turned `tilt` degrees: its bounding box. */
function tiltedSize(w: number, h: number, tilt: number): [number, number] {
  const c = Math.abs(Math.cos((tilt * Math.PI) / 180));
  const s = Math.abs(Math.sin((tilt * Math.PI) / 180));
  return [w * c + h * s, w * s + h * c];
}

/**
 * Level `scale` of the photo turned `tilt` degrees clockwise: `src` (the photo or its down-scaled copy from the
 * SourceCache) brought to the scale and turned by sharp, and the map from the level's pixels back to the photo's
 * (about the two centres: sharp turns about the centre and grows the canvas to the bounding box).
 */
async function tiltedLevel(
  photo: RgbImage,
  src: RgbImage,
  scale: number,
  tilt: number,
): Promise<{ level: RgbImage; toPhoto: (u: number, v: number) => [number, number] }> {
  const sw = Math.max(1, Math.round(photo.width * scale));
  const sh = Math.max(1, Math.round(photo.height * scale));
  // Two sharp calls, not one: within one pipeline sharp orders rotate and resize itself.
  const scaled = src.width === sw && src.height === sh ? src : await resizeRgb(src, sw, sh);
  const { data, info } = await sharpOf(scaled)
    .rotate(tilt, { background: { r: 0, g: 0, b: 0 } })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const level = { width: info.width, height: info.height, data: new Uint8Array(data) };
  const c = Math.cos((tilt * Math.PI) / 180);
  const s = Math.sin((tilt * Math.PI) / 180);
  const fx = photo.width / scaled.width;
  const fy = photo.height / scaled.height;
  return {
    level,
    toPhoto: (u, v) => {
      const dx = u - level.width / 2;
      const dy = v - level.height / 2;
      return [(scaled.width / 2 + c * dx + s * dy) * fx, (scaled.height / 2 - s * dx + c * dy) * fy];
    },
  };
}

/**
 * Scales of the pyramid for a frame fw×fh, ascending: from the scale where a face of `minFace` photo pixels is
 * `inputFace` input pixels wide, down by ×2 steps to the whole frame in one input (the coarsest step may
 * be smaller than ×2). Planned from the top down because the finest level holds most of the tiles: a ×2 ladder
 * built upwards from the whole frame ends with a short step (on 12 MP at 24 px: 1.02 then 1.33), i.e. two
 * nearly equal and expensive levels; from the top, every expensive level is a full ×2 apart and the short step
 * lands on the one-tile level (12 MP, `default`: 190 upright passes instead of 255).
 */
export function pyramid(fw: number, fh: number, minFace: number, inputFace = RELIABLE_INPUT_FACE): number[] {
  const s0 = SSD_INPUT / Math.max(fw, fh);
  const top = Math.max(inputFace, RELIABLE_INPUT_FACE) / minFace;
  const out: number[] = [];
  for (let s = top; s > s0 * (1 + 1e-9); s /= 2) out.push(s);
  out.push(s0);
  return out.reverse();
}

/** 512-px tiles covering a w×h level, overlapping by at least TILE_OVERLAP, evenly spread. */
export function tiles(w: number, h: number): Array<{ x: number; y: number; count: number }> {
  const axis = (len: number): number[] => {
    if (len <= SSD_INPUT + 0.5) return [0];
    const n = Math.ceil((len - TILE_OVERLAP) / (SSD_INPUT - TILE_OVERLAP));
    return Array.from({ length: n }, (_, i) => Math.round((i * (len - SSD_INPUT)) / (n - 1)));
  };
  const xs = axis(w);
  const ys = axis(h);
  return ys.flatMap((y) => xs.map((x) => ({ x, y, count: xs.length * ys.length })));
}

/** Landmarks of the face at photo box `box`, computed in the frame turned `angle` (mapped back to the photo). */
export async function landmarksInTurn(
  models: FaceApi,
  image: RgbImage,
  box: Box,
  angle: Rotation,
): Promise<Point[] | null> {
  if (angle === 0) return models.landmarks(image, box);
  const [ax, ay] = turnPoint(box.x, box.y, angle, image.width, image.height);
  const [bx, by] = turnPoint(box.x + box.width, box.y + box.height, angle, image.width, image.height);
  const fb = { x0: Math.min(ax, bx), y0: Math.min(ay, by), x1: Math.max(ax, bx), y1: Math.max(ay, by) };
  const x0 = Math.floor(fb.x0);
  const y0 = Math.floor(fb.y0);
  const w = Math.max(1, Math.ceil(fb.x1) - x0);
  const h = Math.max(1, Math.ceil(fb.y1) - y0);
  const cropImg = turnedCrop(image, angle, x0, y0, w, h);
  const pts = await models.landmarks(cropImg, {
    x: fb.x0 - x0,
    y: fb.y0 - y0,
    width: fb.x1 - fb.x0,
    height: fb.y1 - fb.y0,
  });
  if (!pts) return null;
  return pts.map(([px, py]) => unturnPoint(px + x0, py + y0, angle, image.width, image.height));
}

/** A face seen upright: pixels, box and landmarks in the coordinates of `image`. */
export interface UprightView {
  image: RgbImage;
  box: Box;
  landmarks: Point[];
}

/**
 * The face turned upright, for networks trained on upright faces (recognizers, attribute nets): a crop of the
 * photo turned `angle` (the detector's turn for this face) around the box grown by `margin` of its side on each
 * side, with box and landmarks in the crop's coordinates. Angle 0 returns the photo itself (no copy), so
 * upright faces are measured exactly as before. The same face geometry gives the same crop of two photos of
 * one size (original and anonymized), so their views compare pixel for pixel.
 */
export function uprightView(
  image: RgbImage,
  face: { box: Box; landmarks: readonly Point[]; angle?: Rotation },
  margin = 0.5,
): UprightView {
  const angle = face.angle ?? 0;
  if (angle === 0) return { image, box: { ...face.box }, landmarks: face.landmarks.map((p) => [p[0], p[1]]) };
  const W = image.width;
  const H = image.height;
  const b = face.box;
  const [ax, ay] = turnPoint(b.x, b.y, angle, W, H);
  const [bx, by] = turnPoint(b.x + b.width, b.y + b.height, angle, W, H);
  const fx = Math.min(ax, bx);
  const fy = Math.min(ay, by);
  const fw = Math.abs(bx - ax);
  const fh = Math.abs(by - ay);
  const pad = margin * Math.max(fw, fh);
  const x0 = Math.floor(fx - pad);
  const y0 = Math.floor(fy - pad);
  const w = Math.ceil(fx + fw + pad) - x0;
  const h = Math.ceil(fy + fh + pad) - y0;
  return {
    image: turnedCrop(image, angle, x0, y0, w, h),
    box: { x: fx - x0, y: fy - y0, width: fw, height: fh },
    landmarks: face.landmarks.map(([x, y]) => {
      const [u, v] = turnPoint(x, y, angle, W, H);
      return [u - x0, v - y0];
    }),
  };
}

/** Frame coordinates (photo turned `angle` clockwise) of a photo point: the inverse of `unturnPoint`. */
function turnPoint(x: number, y: number, angle: Rotation, W: number, H: number): Point {
  switch (angle) {
    case 0:
      return [x, y];
    case 90:
      return [H - y, x];
    case 180:
      return [W - x, H - y];
    case 270:
      return [y, W - x];
  }
}

/** Box grown about its centre: the second crop of `uprightFrame`'s vote. */
const FRAME_VOTE_EXPAND = 1.2;

/**
 * The quarter turn under which the face at `box` is upright, and its landmarks computed in that frame.
 *
 * The 68-point net was trained on upright faces: on an upright face its landmarks agree with those of the
 * mirrored crop (mirrored back); on a face turned by a quarter or upside down it draws an upright face that
 * is not there, and the two disagree (`landmarkInconsistency`). So every frame is tried and the most
 * consistent one wins, averaged over the box and the box grown by FRAME_VOTE_EXPAND (two crops halve the
 * net's crop-to-crop noise). Measured on the 22 sample faces at full size, 64 px and 40 px: the upright frame
 * wins for 21/22 at every size; the exception is a face tilted 43° (sample1), for which the 270° frame is as
 * good. The SSD's own score, tried first, picks a wrong frame for 4–10/22 (it is trained to find faces, not
 * to tell their turn). The detection frame wins ties. 16 landmark-net runs per face.
 */
export async function uprightFrame(
  models: FaceApi,
  image: RgbImage,
  box: Box,
  foundAt: Rotation = 0,
): Promise<{ angle: Rotation; landmarks: Point[]; inconsistency: number } | null> {
  const e = FRAME_VOTE_EXPAND;
  const big = {
    x: box.x - (box.width * (e - 1)) / 2,
    y: box.y - (box.height * (e - 1)) / 2,
    width: box.width * e,
    height: box.height * e,
  };
  let best: { angle: Rotation; landmarks: Point[]; inconsistency: number } | null = null;
  for (const angle of [foundAt, ...([0, 90, 180, 270] as const).filter((a) => a !== foundAt)]) {
    const landmarks = await landmarksInTurn(models, image, box, angle);
    const wide = await landmarksInTurn(models, image, big, angle);
    if (!landmarks || !wide) continue;
    // landmarkInconsistency divides by the clipped box side: the grown box's figure is rescaled to `box`.
    const inconsistency =
      ((await landmarkInconsistency(models, image, box, landmarks, angle)) +
        e * (await landmarkInconsistency(models, image, big, wide, angle))) /
      2;
    if (!best || inconsistency < best.inconsistency) best = { angle, landmarks, inconsistency };
  }
  return best;
}

/** Photo coordinates of a point given in the frame turned `angle` clockwise (continuous pixel coordinates). */
function unturnPoint(x: number, y: number, angle: Rotation, W: number, H: number): Point {
  switch (angle) {
    case 0:
      return [x, y];
    case 90:
      return [y, H - x];
    case 180:
      return [W - x, H - y];
    case 270:
      return [W - y, x];
  }
}

function unturnBox(b: FrameBox, angle: Rotation, W: number, H: number): Box {
  const [ax, ay] = unturnPoint(b.x0, b.y0, angle, W, H);
  const [bx, by] = unturnPoint(b.x1, b.y1, angle, W, H);
  return { x: Math.min(ax, bx), y: Math.min(ay, by), width: Math.abs(bx - ax), height: Math.abs(by - ay) };
}

function clip(b: Box, W: number, H: number): Box | null {
  const x0 = Math.max(0, b.x);
  const y0 = Math.max(0, b.y);
  const x1 = Math.min(W, b.x + b.width);
  const y1 = Math.min(H, b.y + b.height);
  return x1 - x0 >= 1 && y1 - y0 >= 1 ? { x: x0, y: y0, width: x1 - x0, height: y1 - y0 } : null;
}

/**
 * Greedy by score: a candidate is dropped when it overlaps a kept face (IoU > 0.4) or lies mostly inside it
 * (intersection > 70 % of the smaller box: the same face cut by a tile edge, or seen at another scale or turn).
 */
export function mergeCandidates<T extends { box: Box; score: number }>(cands: readonly T[]): T[] {
  const order = [...cands].sort((a, b) => b.score - a.score);
  const kept: T[] = [];
  for (const c of order) {
    const dup = kept.some((k) => {
      const inter = intersectionArea(c.box, k.box);
      const a = c.box.width * c.box.height;
      const b = k.box.width * k.box.height;
      return inter / (a + b - inter) > 0.4 || inter > 0.7 * Math.min(a, b);
    });
    if (!dup) kept.push(c);
  }
  return kept;
}

/**
 * Area-averaged down-scaled copies of the photo per pyramid scale < 1 (sharp), so tiles are sampled from a
 * source at most ~1× their resolution and never alias; scales ≥ 1 sample the photo itself (bilinear up-scale).
 */
class SourceCache {
  private readonly cache = new Map<number, Promise<RgbImage>>();
  constructor(private readonly image: RgbImage) {}

  at(scale: number): Promise<RgbImage> {
    if (scale >= 0.75) return Promise.resolve(this.image);
    let p = this.cache.get(scale);
    if (!p) {
      const { width, height } = this.image;
      p = resizeRgb(
        this.image,
        Math.max(1, Math.round(width * scale)),
        Math.max(1, Math.round(height * scale)),
      );
      this.cache.set(scale, p);
    }
    return p;
  }
}

/** A sharp pipeline over an RGB image's pixels (no copy). */
function sharpOf(img: RgbImage): ReturnType<typeof sharp> {
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  });
}

/** `img` resized to w×h by sharp (linear: area-averaging when it shrinks; see SourceCache). */
async function resizeRgb(img: RgbImage, w: number, h: number): Promise<RgbImage> {
  const { data, info } = await sharpOf(img)
    .resize(w, h, { kernel: 'linear', fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/**
 * The SSD input for the 512×512 tile at (tx, ty) of the level `scale` of the photo turned `angle`: bilinear
 * samples of `src` (the photo or a down-scaled copy of it), black beyond the photo (like face-api's padding),
 * normalised to (v − 127.5) / 127.5, NCHW. A quarter turn maps tile columns to one photo axis and tile rows to
 * the other, so the sample positions and weights are computed once per axis (512 + 512), not per pixel.
 */
function renderTile(
  src: RgbImage,
  photo: RgbImage,
  angle: Rotation,
  scale: number,
  tx: number,
  ty: number,
  gain = 1,
): Float32Array {
  const n = SSD_INPUT;
  const out = new Float32Array(3 * n * n);
  const upright = angle % 180 === 0;
  // Photo x comes from the tile's columns (upright frames) or rows (quarter turns), mirrored for 180/270 (x)
  // and 90/180 (y): unturnPoint, one axis at a time.
  const X = axisSamples(upright ? tx : ty, scale, angle === 180 || angle === 270, photo.width, src.width);
  const Y = axisSamples(upright ? ty : tx, scale, angle === 90 || angle === 180, photo.height, src.height);
  const sw = src.width;
  const d = src.data;
  const plane = n * n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const xi = upright ? j : i;
      const yi = upright ? i : j;
      const o = i * n + j;
      if (!X.ok[xi] || !Y.ok[yi]) {
        out[o] = out[plane + o] = out[2 * plane + o] = -1;
        continue;
      }
      const x0 = X.i0[xi];
      const x1 = X.i1[xi];
      const ax = X.w[xi];
      const ay = Y.w[yi];
      const r0 = Y.i0[yi] * sw;
      const r1 = Y.i1[yi] * sw;
      for (let c = 0; c < 3; c++) {
        const v00 = d[(r0 + x0) * 3 + c];
        const v01 = d[(r0 + x1) * 3 + c];
        const v10 = d[(r1 + x0) * 3 + c];
        const v11 = d[(r1 + x1) * 3 + c];
        const top = v00 + (v01 - v00) * ax;
        const bot = v10 + (v11 - v10) * ax;
        out[c * plane + o] = (Math.min(255, (top + (bot - top) * ay) * gain) - 127.5) / 127.5;
      }
    }
  }
  return out;
}

/** A photo whose brightest 1 % is below this (max channel, 0..255) is treated as under-exposed. */
const DARK_P99 = 160;
/** Largest brightening `exposureGain` applies (a photo darkened ×0.25 is restored). */
const MAX_GAIN = 4;

/**
 * Brightening for an under-exposed photo, applied to every SSD input: the SSD was trained on normally exposed
 * photos and misses faces in dark ones (the `dark` coverage bucket, photos ×0.25: 18/22 found without it,
 * exactly as many as one whole-photo pass). The gain brings the photo's 99th percentile (max channel, on a
 * ≤ 64k-pixel subsample) to 240, at most ×MAX_GAIN; photos with p99 ≥ DARK_P99 get 1 and see exactly the
 * inputs they saw before.
 */
export function exposureGain(image: RgbImage): number {
  const n = image.width * image.height;
  const step = Math.max(1, Math.floor(n / 65536));
  const hist = new Uint32Array(256);
  let count = 0;
  for (let i = 0; i < n; i += step) {
    const o = i * 3;
    hist[Math.max(image.data[o]!, image.data[o + 1]!, image.data[o + 2]!)]++;
    count++;
  }
  let above = 0;
  let p99 = 255;
  for (let v = 255; v >= 0; v--) {
    above += hist[v]!;
    if (above >= count * 0.01) {
      p99 = v;
      break;
    }
  }
  if (p99 >= DARK_P99) return 1;
  return Math.min(MAX_GAIN, 240 / Math.max(p99, 1));
}

/** Side of the blocks whose contrast `isFlat` measures, in input pixels (half the smallest reliable face). */
const FLAT_BLOCK = 16;
/**
 * Largest block standard deviation (grey levels, 0..255) of a tile that cannot hold a face: a flat wall or sky,
 * the black beyond the photo. Measured on the coverage scenes, each face rendered 32 px wide (the smallest
 * reliable size), least-contrasted 16×16 window inside the face: min 1.7 / median 4.2 grey levels on `dark`
 * (×0.25), ≥ 6.4 on blur, JPEG q10, gray and 16-px faces. A tile is skipped only if *every* block is below 1,
 * so no face the net could find is skipped; JPEG noise on a flat sky (σ ≈ 1) may keep its tile, which is the
 * safe side.
 */
const FLAT_STD = 1;

/** Whether every FLAT_BLOCK² block of a rendered tile has a grey-level σ below FLAT_STD (nothing to detect). */
export function isFlat(input: Float32Array): boolean {
  const n = SSD_INPUT;
  const plane = n * n;
  // σ in normalised units ((v − 127.5) / 127.5): compare variances to (FLAT_STD / 127.5)².
  const maxVar = (FLAT_STD / 127.5) ** 2;
  const count = FLAT_BLOCK * FLAT_BLOCK;
  for (let by = 0; by < n; by += FLAT_BLOCK) {
    for (let bx = 0; bx < n; bx += FLAT_BLOCK) {
      let sum = 0;
      let sq = 0;
      for (let i = by; i < by + FLAT_BLOCK; i++) {
        for (let o = i * n + bx, e = o + FLAT_BLOCK; o < e; o++) {
          const v = (input[o] + input[plane + o] + input[2 * plane + o]) / 3;
          sum += v;
          sq += v * v;
        }
      }
      const mean = sum / count;
      if (sq / count - mean * mean > maxVar) return false;
    }
  }
  return true;
}

/**
 * Bilinear taps along one photo axis for the 512 tile positions starting at frame offset `t`: the frame
 * coordinate (t + k + 0.5) / scale, mirrored (`len` − u) when the turn reverses this axis, then mapped into the
 * source copy of `slen` pixels (clamped at its border, `ok` false beyond the photo).
 */
function axisSamples(
  t: number,
  scale: number,
  mirrored: boolean,
  len: number,
  slen: number,
): { i0: Int32Array; i1: Int32Array; w: Float64Array; ok: Uint8Array } {
  const n = SSD_INPUT;
  const i0 = new Int32Array(n);
  const i1 = new Int32Array(n);
  const w = new Float64Array(n);
  const ok = new Uint8Array(n);
  const f = slen / len;
  for (let k = 0; k < n; k++) {
    const u = (t + k + 0.5) / scale;
    const p = mirrored ? len - u : u;
    if (p < 0 || p >= len) continue;
    ok[k] = 1;
    const sp = Math.min(Math.max(p * f - 0.5, 0), slen - 1);
    i0[k] = Math.floor(sp);
    i1[k] = Math.min(i0[k] + 1, slen - 1);
    w[k] = sp - i0[k];
  }
  return { i0, i1, w, ok };
}

/** Pixels of the photo turned `angle` clockwise, in the w×h window at (x0, y0) of that frame (exact copy). */
function turnedCrop(
  photo: RgbImage,
  angle: Rotation,
  x0: number,
  y0: number,
  w: number,
  h: number,
): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const [px, py] = unturnPoint(x0 + c + 0.5, y0 + r + 0.5, angle, photo.width, photo.height);
      const sx = Math.floor(px);
      const sy = Math.floor(py);
      if (sx < 0 || sy < 0 || sx >= photo.width || sy >= photo.height) continue;
      const s = (sy * photo.width + sx) * 3;
      const o = (r * w + c) * 3;
      data[o] = photo.data[s];
      data[o + 1] = photo.data[s + 1];
      data[o + 2] = photo.data[s + 2];
    }
  }
  return { width: w, height: h, data };
}
