/**
 * `npm run bench -- attributes [image]`: what the utility check costs per face (issue #10). On the faces of a
 * photo (face-api's sample1.jpg, 1920 px, 3 faces, by default; found by one whole-image pass, which is enough
 * here), the median wall time and the process CPU time (user + system, all threads: the figure least disturbed
 * by neighbours on a shared machine) of:
 * - `measure_one_side`: AttributeMeter.measureAttributes (age/gender + expression nets on a 112-px crop, pose);
 * - `compare_per_face`: AttributeMeter.compare, what the pipeline runs per FALCO face (both sides, each with a
 *   landmark pass).
 * Session creation is reported apart (the pipeline creates the sessions at start-up).
 */
import { readFileSync } from 'node:fs';
import { AttributeMeter } from '../../functions/pipeline/attributes.js';
import type { Point } from '../../functions/pipeline/align.js';
import { decodeImage } from '../../functions/pipeline/image-io.js';
import type { Box } from '../../functions/pipeline/types.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';
import { report } from './report.js';

const REPS = 5;

export default async function attributes(args: string[]): Promise<void> {
  const file = args[0] ?? samplePath(1);
  const { image } = await decodeImage(readFileSync(file));
  const models = new FaceApi({ provider: 'cpu' });
  const meter = new AttributeMeter(models);
  const faces: Array<{ box: Box; landmarks: Point[] }> = [];
  for (const d of await models.detect(image)) {
    const landmarks = await models.landmarks(image, d.box);
    if (landmarks) faces.push({ box: d.box, landmarks });
  }
  if (!faces.length) throw new Error(`no face found in ${file}`);
  const extra = {
    image: file.split('/').pop(),
    width: image.width,
    height: image.height,
    faces: faces.length,
  };
  let t = performance.now();
  await meter.warmup();
  report('attributes', 'session_setup', performance.now() - t, 'ms', extra);

  /** Median wall ms per face and mean CPU ms per face of `fn` over every face, REPS times after a warm-up. */
  const perFace = async (fn: (f: (typeof faces)[number]) => Promise<unknown>) => {
    for (const f of faces) await fn(f);
    const wall: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let r = 0; r < REPS; r++)
      for (const f of faces) {
        t = performance.now();
        await fn(f);
        wall.push(performance.now() - t);
      }
    const cpu = process.cpuUsage(cpu0);
    wall.sort((a, b) => a - b);
    return { wall: wall[wall.length >> 1]!, cpu: (cpu.user + cpu.system) / 1000 / (REPS * faces.length) };
  };
  const one = await perFace((f) => meter.measureAttributes(image, f));
  const both = await perFace((f) => meter.compare(image, image, f));
  report('attributes', 'measure_one_side_wall', one.wall, 'ms/face', extra);
  report('attributes', 'measure_one_side_cpu', one.cpu, 'ms/face', extra);
  report('attributes', 'compare_per_face_wall', both.wall, 'ms/face', extra);
  report('attributes', 'compare_per_face_cpu', both.cpu, 'ms/face', extra);
  await meter.close();
  await models.close();
}
