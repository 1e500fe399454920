/**
 * TEST STAND-IN for the anonymization engine — it does not anonymize anything. It exists so every service
 * path (queue, progress, results, reports, billing, webhooks, failures) can be exercised without the models:
 * it decodes with sharp, inverts the colours inside a fixed central box and reports that box as one face.
 * The local stack only uses it when the real engine or the demo bundle is missing, with a loud warning.
 */
import sharp from 'sharp';
import { checkImage } from '../pipeline/image-io.js';
import { FORMATS } from '../pipeline/formats.js';
import {
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
      // The one decode policy (image-io): same checks and messages as the real engine.
      const probe = await checkImage(input);
      // Stored (not display) orientation: the box below is cut from the unrotated input.
      const [width, height] =
        probe.orientation >= 5 ? [probe.height, probe.width] : [probe.width, probe.height];
      const inFormat = probe.format;
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
      const contentType = FORMATS[format].contentType;
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
            },
          ],
          outcome: 'ok',
          bundle: { id: 'stand-in', demo: true },
          timingsMs: { total: Date.now() - t0 },
        },
      };
    },
    async close() {},
  };
}
