import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// node_modules is mounted read-only in the sandbox, so Vite's cache lives in the project (.vite/,
// never part of a version); relative URLs let the built app be served under any path.
export default defineConfig({
  plugins: [react()],
  base: './',
  cacheDir: '.vite',
})
