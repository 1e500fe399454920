/**
 * `npm run bench -- faces [image]`: detection + landmarks + FFHQ alignment on a 1920-px photo (face-api's
 * sample1.jpg, 3 faces, by default), CPU onnxruntime. Session creation (graph build + load) is reported apart.
 */
import { readFileSync } from 'node:fs';
import { alignFace } from '../../functions/pipeline/align.js';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { decodeImage } from '../../functions/pipeline/image-io.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';
import { report, timeIt } from './report.js';

export default async function faces(args: string[]): Promise<void> {
  const file = args[0] ?? samplePath(1);
  const bytes = readFileSync(file);
  const decode = await timeIt(() => decodeImage(bytes), 5);
  const { image } = await decodeImage(bytes);
  const extra = { image: file.split('/').pop(), width: image.width, height: image.height };
  const models = new FaceApi({ provider: 'cpu' });
  let t = performance.now();
  await models.warmup();
  report('faces', 'session_setup', performance.now() - t, 'ms', extra);
  const detector = new FaceDetector(models);
  const found = await detector.detect(image);
  const n = found.length;
  const ssd = await timeIt(() => models.detect(image), 5);
  const landmarks = await timeIt(() => Promise.all(found.map((f) => models.landmarks(image, f.box))), 5);
  const total = await timeIt(() => detector.detect(image), 5);
  const align256 = await timeIt(async () => found.map((f) => alignFace(image, f.landmarks, 256)), 5);
  const align1024 = await timeIt(async () => found.map((f) => alignFace(image, f.landmarks, 1024)), 3);
  t = performance.now();
  await Promise.all(found.map((f) => models.descriptor(image, f.landmarks)));
  const descr = performance.now() - t;
  report('faces', 'decode', decode, 'ms', extra);
  report('faces', 'ssd_detect', ssd, 'ms', extra);
  report('faces', 'landmarks_all_faces', landmarks, 'ms', { ...extra, faces: n });
  report('faces', 'detect_plus_landmarks', total, 'ms', { ...extra, faces: n });
  report('faces', 'align_all_faces_256', align256, 'ms', { ...extra, faces: n });
  report('faces', 'align_all_faces_1024', align1024, 'ms', { ...extra, faces: n });
  report('faces', 'detect_landmarks_align1024_total', total + align1024, 'ms', { ...extra, faces: n });
  report('faces', 'descriptors_all_faces_once', descr, 'ms', { ...extra, faces: n });
  await models.close();
}
