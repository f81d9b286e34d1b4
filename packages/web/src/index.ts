/**
 * The fleet dashboard (Vite app in this package; browser code in main.ts and pages/). The
 * Node-side surface is where the built files are, for the server or CLI to serve.
 */
import { fileURLToPath } from 'node:url';

/** Directory of `vite build`'s output (packages/web/dist), served by the fleet server at /ui/. */
export const DASHBOARD_DIST: string = fileURLToPath(new URL('../dist', import.meta.url));
