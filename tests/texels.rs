//! `Gpu::texels`: a buffer's vec4s copied into a texture read back by a kernel through
//! `Gpu::dispatch_with`, on lengths under, at and past a texture row; and what it refuses.

mod common;

use common::gpu;
use lskbb::gpu::{grid, texel_floats, Kernel, TEXEL_ROW};
use lskbb::{DType, Tensor};

/// out[i] = texel i, read at (i % TEXEL_ROW, i / TEXEL_ROW) as the kernels that use texels do.
const READ_BACK: Kernel = Kernel {
    name: "texels_read_back",
    source: "
struct P { n: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(16) var t: texture_2d<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= p.n { return; }
    out[i] = textureLoad(t, vec2<u32>(i % 1024u, i / 1024u), 0);
}
",
    entry: "main",
};

#[test]
fn texels_hold_the_buffers_vec4s_in_order() {
    assert_eq!(TEXEL_ROW, 1024, "READ_BACK's row length");
    let gpu = gpu();
    for vec4s in [
        1,
        7,
        TEXEL_ROW - 1,
        TEXEL_ROW,
        TEXEL_ROW + 1,
        2 * TEXEL_ROW + 333,
    ] {
        let floats = texel_floats(vec4s);
        assert!(floats >= 4 * vec4s && floats.is_multiple_of(4 * TEXEL_ROW));
        let data: Vec<f32> = (0..floats).map(|i| i as f32 * 0.5 - 7.0).collect();
        let src = Tensor::from_f32(&gpu, &data, &[floats]).unwrap();
        let texels = gpu.texels(src.buf(), vec4s).unwrap();
        let out = Tensor::empty(&gpu, &[4 * vec4s], DType::F32).unwrap();
        let params = [vec4s as u32, 0, 0, 0];
        gpu.dispatch_with(
            &READ_BACK,
            bytemuck::cast_slice(&params),
            &[],
            &[out.buf()],
            &[&texels],
            grid(vec4s),
        )
        .unwrap();
        let got = out.to_f32().unwrap();
        assert_eq!(got, data[..4 * vec4s], "{vec4s} texels");
    }
}

#[test]
fn texels_refuse_a_buffer_short_of_whole_rows() {
    let gpu = gpu();
    let src = Tensor::zeros(&gpu, &[4 * TEXEL_ROW]).unwrap();
    let e = gpu
        .texels(src.buf(), TEXEL_ROW + 1)
        .err()
        .expect("a short buffer");
    let msg = format!("{e:#}");
    assert!(msg.contains("must hold 32768 bytes"), "{msg}");
}
