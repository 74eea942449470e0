import { defineConfig } from "vite";

// `npm run dev` serves the client on :5173 and forwards the API to the local server on :3000, so
// the client and the API share one origin, as they do behind CloudFront.
const api = process.env.API_PROXY_TARGET ?? "http://127.0.0.1:3000";

// The original spec's defaults; the environment of a build overrides them.
process.env.VITE_APP_NAME ||= "backend";
process.env.VITE_API_URL ??= "";

export default defineConfig({
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      "/api": api,
      "/health": api,
      "/ready": api,
    },
  },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    // No inline scripts or styles: the site's Content-Security-Policy allows neither.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
});
