/**
 * TEST STAND-IN for the anonymization engine — it does not anonymize anything. It exists so every service
 * path (queue, progress, results, reports, billing, webhooks, failures) can be exercised without the models:
 * it decodes with sharp, inverts the colours inside a fixed central box and reports that box as one face.
 * The local stack only uses it when the real engine or the demo bundle is missing, with a loud warning.
 */
import sharp from 'sharp';
import {
  InputError,
  PrivacyError,
  type AnonymizeOptions,
  type Anonymizer,
  type AnonymizeResult,
  type Progress,
} from '../pipeline/types.js';

export interface StandInOptions {
  /** Milliseconds per "optimization step" (tests use it to kill a worker mid-way). */
  stepMs?: number;
  /** Seed value that makes the stand-in throw PrivacyError (to test the not-billed path). */
  privacyFailSeed?: number;
  /** Seed value that makes the stand-in throw a plain Error (to test retries and the DLQ). */
  crashSeed?: number;
}

export function createStandInAnonymizer(opts: StandInOptions = {}): Anonymizer {
  const stepMs = opts.stepMs ?? 0;
  return {
    async anonymize(
      input: Uint8Array,
      options: AnonymizeOptions = {},
      onProgress?: (p: Progress) => void,
    ): Promise<AnonymizeResult> {
      const t0 = Date.now();
      onProgress?.({ fraction: 0, stage: 'decode' });
      let meta;
      try {
        meta = await sharp(input, { failOn: 'error' }).metadata();
      } catch (err) {
        throw new InputError('undecodable-image', `cannot decode image: ${(err as Error).message}`);
      }
      const width = meta.width ?? 0;
      const height = meta.height ?? 0;
      const inFormat = meta.format === 'png' || meta.format === 'webp' ? meta.format : 'jpeg';
      const format = options.format ?? inFormat;
      if (options.seed !== undefined && options.seed === opts.crashSeed)
        throw new Error('stand-in: simulated engine crash');
      const steps = options.steps ?? 5;
      for (let s = 0; s < steps; s++) {
        onProgress?.({
          fraction: 0.1 + (0.8 * s) / steps,
          stage: 'optimize',
          face: 0,
          faces: 1,
          step: s,
          steps,
        });
        if (stepMs) await new Promise((r) => setTimeout(r, stepMs));
      }
      if (options.seed !== undefined && options.seed === opts.privacyFailSeed) {
        throw new PrivacyError('face 0 is still re-identifiable after 3 attempts (stand-in simulation)');
      }
      const box = {
        x: Math.round(width * 0.3),
        y: Math.round(height * 0.2),
        width: Math.max(1, Math.round(width * 0.4)),
        height: Math.max(1, Math.round(height * 0.5)),
      };
      const patch = await sharp(input)
        .extract({ left: box.x, top: box.y, width: box.width, height: box.height })
        .negate({ alpha: false })
        .toBuffer();
      onProgress?.({ fraction: 0.95, stage: 'encode' });
      const image = await sharp(input)
        .rotate()
        .composite([{ input: patch, left: box.x, top: box.y }])
        .toFormat(format)
        .toBuffer();
      const contentType = format === 'png' ? 'image/png' : format === 'webp' ? 'image/webp' : 'image/jpeg';
      return {
        image,
        contentType,
        report: {
          width,
          height,
          format,
          faces: [
            {
              index: 0,
              box,
              score: 0.99,
              losses: Array.from(
                { length: steps },
                (_, i) => [1 / (i + 1), 0.5 / (i + 1), 0.1] as [number, number, number],
              ),
              identityDistance: 0.9,
              reidentified: false,
              attempts: 1,
              timingsMs: { optimize: steps * stepMs },
              // The stand-in covers a fixed box (colours inverted); it never runs the generator.
              method: 'fill',
              methodReason: 'stand-in',
              recognizers: [],
            },
          ],
          facesFound: 1,
          residualFaces: 0,
          outcome: 'ok',
          bundle: { id: 'stand-in', demo: true },
          timingsMs: { total: Date.now() - t0 },
        },
      };
    },
    async close() {},
  };
}
