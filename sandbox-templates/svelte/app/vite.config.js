import { defineConfig } from 'vite'
import { svelte } from '@sveltejs/vite-plugin-svelte'

// node_modules is mounted read-only in the sandbox: Vite's cache goes to the temporary folder,
// and the build uses relative URLs so the preview works under any path.
export default defineConfig({
  plugins: [svelte()],
  base: './',
  cacheDir: process.env.VITE_CACHE_DIR || '/tmp/vite-cache',
})
