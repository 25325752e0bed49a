import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The dashboard bundle, served by the gateway at /dashboard (src/http/dashboard.ts) from dist/dashboard.
// Everything is bundled (no CDN); no inline script or style, so the page runs under a strict CSP.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/dashboard/',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/dashboard', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
