/** WGSL shader files are bundled as text by esbuild (loader: text). */
declare module '*.wgsl' {
  const source: string;
  export default source;
}
