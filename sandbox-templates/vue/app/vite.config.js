import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// node_modules is mounted read-only in the sandbox: Vite's cache goes to the temporary folder,
// and the build uses relative URLs so the preview works under any path.
export default defineConfig({
  plugins: [vue()],
  base: './',
  cacheDir: process.env.VITE_CACHE_DIR || '/tmp/vite-cache',
})
