import { defineConfig } from 'vitest/config';

// Model tests are CPU-heavy (onnxruntime uses both cores); running files in parallel on the
// 2-core CI machine only makes every test slower and risks timeouts, so files run one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
