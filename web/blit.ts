/**
 * Draws a texture onto a canvas (or any render target) with a full-screen triangle, sampled
 * nearest so class colours stay exact: what an application does with the engine's output
 * texture. Used by the demo page and the embedding test; not part of the library.
 */
const SHADER = /* wgsl */ `
struct U { dst: vec2<f32> }
@group(0) @binding(0) var src: texture_2d<f32>;
@group(0) @binding(1) var<uniform> u: U;
@vertex fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
  let p = array(vec2<f32>(-1.0, -1.0), vec2<f32>(3.0, -1.0), vec2<f32>(-1.0, 3.0));
  return vec4<f32>(p[i], 0.0, 1.0);
}
@fragment fn fs(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
  let size = vec2<f32>(textureDimensions(src));
  let texel = vec2<i32>(min(floor(pos.xy * size / u.dst), size - 1.0));
  return vec4<f32>(textureLoad(src, texel, 0).rgb, 1.0);
}`;

export class TextureBlitter {
  private pipeline: GPURenderPipeline;
  private uniforms: GPUBuffer;

  constructor(private device: GPUDevice, format: GPUTextureFormat) {
    const module = device.createShaderModule({ code: SHADER, label: 'blit' });
    this.pipeline = device.createRenderPipeline({
      layout: 'auto',
      vertex: { module, entryPoint: 'vs' },
      fragment: { module, entryPoint: 'fs', targets: [{ format }] },
      primitive: { topology: 'triangle-list' },
      label: 'blit',
    });
    this.uniforms = device.createBuffer({ size: 16, usage: 0x0040 | 0x0008, label: 'blit size' }); // UNIFORM | COPY_DST
  }

  /** Draws `texture` stretched over `target` (width x height pixels) and submits. */
  draw(texture: GPUTexture, target: GPUTexture): void {
    this.device.queue.writeBuffer(this.uniforms, 0, new Float32Array([target.width, target.height, 0, 0]));
    const bind = this.device.createBindGroup({
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: texture.createView() }, { binding: 1, resource: { buffer: this.uniforms } }],
    });
    const enc = this.device.createCommandEncoder({ label: 'blit' });
    const pass = enc.beginRenderPass({ colorAttachments: [{ view: target.createView(), loadOp: 'clear', storeOp: 'store', clearValue: [0, 0, 0, 1] }] });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bind);
    pass.draw(3);
    pass.end();
    this.device.queue.submit([enc.finish()]);
  }

  destroy(): void {
    this.uniforms.destroy();
  }
}
