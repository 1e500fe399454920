/**
 * Upstream oracle: runs the real `@vladmandic/face-api` (devDependency, via plain `@tensorflow/tfjs` on its CPU
 * backend) to get the reference boxes, 68-point landmarks and 128-D descriptors our ports are compared against.
 *
 * face-api's Node build (`dist/face-api.node.js`) `require`s `@tensorflow/tfjs-node` (native bindings we do not
 * install); its API only needs the tfjs namespace, so we redirect that one module id to `@tensorflow/tfjs`
 * while loading it. The CPU backend is slow (~10 s for a 1920-px photo on one core), so results are cached as
 * JSON keyed by sha256(image bytes + options + versions), in $FACEAPI_ORACLE_CACHE or the OS temp dir: a machine
 * computes each photo once, CI (fresh machine) computes the few photos the tests use.
 *
 * Standalone: `npx tsx test/faceapi/oracle.ts <image>...` prints the oracle JSON.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeImage, type RgbImage } from '../../functions/pipeline/image-io.js';

const require = createRequire(import.meta.url);

export const FACEAPI_DIR = dirname(require.resolve('@vladmandic/face-api/package.json'));
export const FACEAPI_MODEL_DIR = join(FACEAPI_DIR, 'model');
export const FACEAPI_DEMO_DIR = join(FACEAPI_DIR, 'demo');
export const FACEAPI_VERSION: string = (
  JSON.parse(readFileSync(join(FACEAPI_DIR, 'package.json'), 'utf8')) as { version: string }
).version;

export interface OracleFace {
  box: { x: number; y: number; width: number; height: number };
  score: number;
  landmarks: Array<[number, number]>;
  descriptor: number[];
}

export interface OracleResult {
  width: number;
  height: number;
  faces: OracleFace[];
  ms: number;
}

export interface OracleOptions {
  minConfidence?: number;
  maxResults?: number;
}

// face-api's public API, typed as far as we use it.
interface FaceApiLike {
  tf: {
    tensor3d(
      data: Uint8Array | Int32Array | Float32Array,
      shape: [number, number, number],
      dtype?: string,
    ): { dispose(): void };
    setBackend(name: string): Promise<boolean>;
    ready(): Promise<void>;
    getBackend(): string;
    enableProdMode(): void;
  };
  nets: {
    ssdMobilenetv1: { loadFromDisk(dir: string): Promise<void> };
    faceLandmark68Net: { loadFromDisk(dir: string): Promise<void> };
    faceRecognitionNet: {
      loadFromDisk(dir: string): Promise<void>;
      computeFaceDescriptor(input: unknown): Promise<Float32Array | Float32Array[]>;
    };
  };
  SsdMobilenetv1Options: new (o: { minConfidence?: number; maxResults?: number }) => unknown;
  detectAllFaces(
    input: unknown,
    options: unknown,
  ): {
    withFaceLandmarks(): {
      withFaceDescriptors(): Promise<
        Array<{
          detection: { score: number; box: { x: number; y: number; width: number; height: number } };
          landmarks: { positions: Array<{ x: number; y: number }> };
          descriptor: Float32Array;
        }>
      >;
    };
  };
}

let faceapiPromise: Promise<FaceApiLike> | undefined;

/** Loads face-api with tfjs (CPU) and the three nets; memoised. */
export function loadFaceApi(): Promise<FaceApiLike> {
  faceapiPromise ??= (async () => {
    const mod = Module as unknown as { _resolveFilename: (req: string, ...rest: unknown[]) => string };
    const original = mod._resolveFilename;
    mod._resolveFilename = function (this: unknown, req: string, ...rest: unknown[]) {
      return original.call(this, req === '@tensorflow/tfjs-node' ? '@tensorflow/tfjs' : req, ...rest);
    };
    let faceapi: FaceApiLike;
    try {
      faceapi = require('@vladmandic/face-api/dist/face-api.node.js') as FaceApiLike;
    } finally {
      mod._resolveFilename = original;
    }
    // tfjs prints a banner recommending tfjs-node; it is noise in test logs.
    const warn = console.warn;
    console.warn = () => {};
    try {
      await faceapi.tf.setBackend('cpu');
      await faceapi.tf.ready();
      faceapi.tf.enableProdMode();
    } finally {
      console.warn = warn;
    }
    await faceapi.nets.ssdMobilenetv1.loadFromDisk(FACEAPI_MODEL_DIR);
    await faceapi.nets.faceLandmark68Net.loadFromDisk(FACEAPI_MODEL_DIR);
    await faceapi.nets.faceRecognitionNet.loadFromDisk(FACEAPI_MODEL_DIR);
    return faceapi;
  })();
  return faceapiPromise;
}

export function oracleCacheDir(): string {
  return process.env.FACEAPI_ORACLE_CACHE ?? join(tmpdir(), 'falco-faceapi-oracle');
}

function cached<T>(key: string, compute: () => Promise<T>): Promise<T> {
  const dir = oracleCacheDir();
  const file = join(dir, `${key}.json`);
  if (existsSync(file)) return Promise.resolve(JSON.parse(readFileSync(file, 'utf8')) as T);
  return compute().then((value) => {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(value));
    renameSync(tmp, file);
    return value;
  });
}

function keyOf(kind: string, bytes: Uint8Array, options: unknown): string {
  return createHash('sha256')
    .update(kind)
    .update(FACEAPI_VERSION)
    .update(JSON.stringify(options ?? {}))
    .update(bytes)
    .digest('hex')
    .slice(0, 32);
}

/**
 * Full upstream pipeline on one photo (EXIF orientation applied by our decoder, so both sides see the same
 * pixels): ssdMobilenetv1 detections → 68 landmarks → 128-D descriptors.
 */
export async function oracleDetect(bytes: Uint8Array, options: OracleOptions = {}): Promise<OracleResult> {
  const opts = { minConfidence: options.minConfidence ?? 0.5, maxResults: options.maxResults ?? 100 };
  return cached(keyOf('detect', bytes, opts), async () => {
    const { image } = await decodeImage(bytes);
    const faceapi = await loadFaceApi();
    const t = faceapi.tf.tensor3d(image.data, [image.height, image.width, 3], 'int32');
    const t0 = performance.now();
    try {
      const res = await faceapi
        .detectAllFaces(t, new faceapi.SsdMobilenetv1Options(opts))
        .withFaceLandmarks()
        .withFaceDescriptors();
      const faces: OracleFace[] = res.map((r) => ({
        box: {
          x: r.detection.box.x,
          y: r.detection.box.y,
          width: r.detection.box.width,
          height: r.detection.box.height,
        },
        score: r.detection.score,
        landmarks: r.landmarks.positions.map((p) => [p.x, p.y] as [number, number]),
        descriptor: Array.from(r.descriptor),
      }));
      return { width: image.width, height: image.height, faces, ms: performance.now() - t0 };
    } finally {
      t.dispose();
    }
  });
}

/** Upstream 128-D descriptor of an image that is already a face crop (face-api resizes it to 150×150 itself). */
export async function oracleDescriptor(img: RgbImage): Promise<number[]> {
  return cached(keyOf('descriptor', img.data, [img.width, img.height]), async () => {
    const faceapi = await loadFaceApi();
    const t = faceapi.tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
    try {
      const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(t);
      return Array.from(Array.isArray(d) ? d[0] : d);
    } finally {
      t.dispose();
    }
  });
}

export function euclidean(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length mismatch ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

export function samplePath(n: number): string {
  return join(FACEAPI_DEMO_DIR, `sample${n}.jpg`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const file of process.argv.slice(2)) {
    const r = await oracleDetect(readFileSync(file));
    process.stdout.write(`${JSON.stringify({ file, ...r })}\n`);
  }
}

let attributeNets: Promise<void> | undefined;

/**
 * Upstream age/gender and expressions of an image that is already the face crop (face-api pads it to a square
 * and resizes it to 112 px itself).
 */
export async function oracleAttributes(
  img: RgbImage,
): Promise<{ age: number; male: number; expressions: number[] }> {
  return cached(keyOf('attributes', img.data, [img.width, img.height]), async () => {
    const faceapi = (await loadFaceApi()) as FaceApiLike & {
      nets: {
        ageGenderNet: {
          loadFromDisk(dir: string): Promise<void>;
          predictAgeAndGender(
            t: unknown,
          ): Promise<{ age: number; gender: string; genderProbability: number }>;
        };
        faceExpressionNet: {
          loadFromDisk(dir: string): Promise<void>;
          predictExpressions(t: unknown): Promise<Record<string, number>>;
        };
      };
    };
    attributeNets ??= (async () => {
      await faceapi.nets.ageGenderNet.loadFromDisk(FACEAPI_MODEL_DIR);
      await faceapi.nets.faceExpressionNet.loadFromDisk(FACEAPI_MODEL_DIR);
    })();
    await attributeNets;
    const t = faceapi.tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
    try {
      const ag = await faceapi.nets.ageGenderNet.predictAgeAndGender(t);
      const ex = await faceapi.nets.faceExpressionNet.predictExpressions(t);
      const labels = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised'];
      return {
        age: ag.age,
        male: ag.gender === 'male' ? ag.genderProbability : 1 - ag.genderProbability,
        expressions: labels.map((l) => ex[l]!),
      };
    } finally {
      t.dispose();
    }
  });
}
