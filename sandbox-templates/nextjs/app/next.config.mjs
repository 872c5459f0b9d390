// A static export: `next build` writes the app to out/, which the preview serves as files.
// Telemetry stays off (the sandbox has no network) and images are not optimised at run time.
/** @type {import('next').NextConfig} */
const nextConfig = {
  output: 'export',
  images: { unoptimized: true },
  assetPrefix: './',
}

export default nextConfig
