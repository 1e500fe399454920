// onnx-proto is CommonJS: Node's ESM loader cannot see its named exports, so take the default export.
import pkg from 'onnx-proto';
export type { onnx as OnnxT } from 'onnx-proto';
export const onnx = pkg.onnx;
