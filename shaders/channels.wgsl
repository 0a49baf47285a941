// Channel plumbing: strided block copies (concat and slice along dim 1, and their backward)
// and the ResNet option-A shortcut (subsample by stride, zero-pad channels) with its backward.

struct P {
    n: u32,           // threads: elements written
    block: u32,       // copy: elements per sample copied
    src_stride: u32,  // copy: elements per sample in src
    src_off: u32,     // copy: first element copied within a src sample
    dst_stride: u32,
    dst_off: u32,
    stride: u32,      // shortcut: spatial stride
    pad: u32,         // shortcut: zero channels added on each side
    c: u32,           // shortcut: input [N, c, h, w], output [N, co, ho, wo]
    h: u32,
    w: u32,
    co: u32,
    ho: u32,
    wo: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// dst[n, dst_off + r] = src[n, src_off + r] for r < block, per sample n.
@compute @workgroup_size(256)
fn copy_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let ni = i / p.block;
    let r = i % p.block;
    dst[ni * p.dst_stride + p.dst_off + r] = src[ni * p.src_stride + p.src_off + r];
}

@compute @workgroup_size(256)
fn shortcut_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let wi = i % p.wo;
    let t = i / p.wo;
    let hi = t % p.ho;
    let t2 = t / p.ho;
    let ci = t2 % p.co;
    let ni = t2 / p.co;
    var v = 0.0;
    if ci >= p.pad && ci < p.pad + p.c {
        v = src[((ni * p.c + ci - p.pad) * p.h + hi * p.stride) * p.w + wi * p.stride];
    }
    dst[i] = v;
}

// src is the output gradient, dst the input gradient (zero off the stride grid).
@compute @workgroup_size(256)
fn shortcut_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let wi = i % p.w;
    let t = i / p.w;
    let hi = t % p.h;
    let t2 = t / p.h;
    let ci = t2 % p.c;
    let ni = t2 / p.c;
    var v = 0.0;
    if hi % p.stride == 0u && wi % p.stride == 0u {
        v = src[((ni * p.co + ci + p.pad) * p.ho + hi / p.stride) * p.wo + wi / p.stride];
    }
    dst[i] = v;
}
