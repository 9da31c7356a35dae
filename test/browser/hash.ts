/** FNV-1a over the bytes of an id map: a compact fingerprint printed for the Node and page runs. */
export function hashIds(ids: Int32Array): string {
  let h = 0x811c9dc5;
  const b = new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength);
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}
