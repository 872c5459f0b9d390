import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// node_modules is mounted read-only in the sandbox, so Vite's cache lives in the project (.vite/,
// never part of a version); relative URLs let the built app be served under any path.
export default defineConfig({
  plugins: [vue()],
  base: './',
  cacheDir: '.vite',
})
