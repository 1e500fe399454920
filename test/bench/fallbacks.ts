/**
 * `npm run bench -- fallbacks`: how strongly each fallback cover (functions/pipeline/obscure.ts) removes
 * identity. Every face face-api finds in sample1-6 is covered by each method in turn, at full size and
 * downscaled so its box is 64 px wide, and the independent recognizer compares original and covered face
 * (landmarks re-estimated on the covered photo inside the original box, as a re-identification attempt would).
 * Figures: median and smallest distance, and the fraction of faces still judged "same person" (< 0.6).
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { IdentityChecker, REIDENTIFICATION_THRESHOLD } from '../../functions/pipeline/identity.js';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';
import { obscureFace, type FallbackMethod } from '../../functions/pipeline/obscure.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';
import { report } from './report.js';

export default async function fallbacks(): Promise<void> {
  const models = new FaceApi({ provider: 'cpu' });
  const detector = new FaceDetector(models);
  const identity = new IdentityChecker(models);
  const methods: FallbackMethod[] = ['pixelate', 'fill', 'blur'];
  for (const scale of ['full', '64px'] as const) {
    const dist: Record<string, number[]> = Object.fromEntries(methods.map((m) => [m, []]));
    for (let i = 1; i <= 6; i++) {
      const bytes = readFileSync(samplePath(i));
      let image: RgbImage = (await decodeImage(bytes)).image;
      let faces = await detector.detect(image);
      if (scale === '64px' && faces.length) {
        const w = Math.round((image.width * 64) / faces[0]!.box.width);
        image = (await decodeImage(await sharp(bytes).resize({ width: w }).png().toBuffer())).image;
        faces = await detector.detect(image, { scoreThreshold: 0.3 });
      }
      for (const f of faces)
        for (const m of methods) {
          const covered = obscureFace(image, f.box, m, f.index).image;
          const c = await identity.check(image, covered, f).catch(() => null);
          dist[m]!.push(c ? c.distance : Infinity);
        }
    }
    for (const m of methods) {
      const v = [...dist[m]!].sort((a, b) => a - b);
      const extra = { method: m, scale, faces: v.length };
      report('fallbacks', 'faceapi_distance_median', v[Math.floor(v.length / 2)] ?? NaN, 'euclid', extra);
      report('fallbacks', 'faceapi_distance_min', v[0] ?? NaN, 'euclid', extra);
      report(
        'fallbacks',
        'still_recognisable',
        v.filter((d) => d < REIDENTIFICATION_THRESHOLD).length / Math.max(1, v.length),
        'fraction',
        extra,
      );
    }
  }
  await models.close();
}
