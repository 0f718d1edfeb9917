import { defineConfig } from 'vitest/config';

// Tests of the Secsync library (src/secsync). Run inside labextension/: `npx vitest run`.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30000,
    hookTimeout: 60000,
    // engine tests start relays on free ports; files may run in parallel
    fileParallelism: true
  }
});
