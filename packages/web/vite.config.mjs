// Vite build of the dashboard. The base path is where the server mounts it (default /ui/);
// set FERRY_WEB_BASE to serve it elsewhere. The output is static files in dist/.
import { defineConfig } from 'vite';

export default defineConfig({
  base: process.env.FERRY_WEB_BASE ?? '/ui/',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: true },
  server: {
    // `vite` (dev): the API of a fleet server on FERRY_SERVER (cookies are Path=/api/).
    proxy: { '/api': process.env.FERRY_SERVER ?? 'http://127.0.0.1:8080' },
  },
});
