/** The differentiable ONNX engine: build graphs, differentiate them, serialise and run them. */
export * from './graph.js';
export { grad } from './autodiff.js';
export * from './ops/elementwise.js';
export * from './ops/activations.js';
export * from './ops/matmul.js';
export * from './ops/conv.js';
export * from './ops/norm.js';
export * from './ops/reduce.js';
export * from './ops/shape.js';
export * from './ops/pool.js';
export * from './ops/resample.js';
export * from './optim.js';
export { toBytes, save, live, OPSET } from './serialize.js';
export { denseFlops, type GraphCost } from './cost.js';
export {
  Session,
  FeedError,
  ProviderError,
  cudaAvailable,
  cudaProviderLibrary,
  providerFromEnv,
  type Provider,
  type ProviderChoice,
  type Output,
  type Feed,
} from './runtime.js';
