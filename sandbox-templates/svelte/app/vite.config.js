import { defineConfig } from 'vite'
import { svelte } from '@sveltejs/vite-plugin-svelte'

// node_modules is mounted read-only in the sandbox, so Vite's cache lives in the project (.vite/,
// never part of a version); relative URLs let the built app be served under any path.
export default defineConfig({
  plugins: [svelte()],
  base: './',
  cacheDir: '.vite',
})
