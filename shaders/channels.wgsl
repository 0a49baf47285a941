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

// Flat index i of an [N, c, h, w] array as (column, row, channel, sample).
fn split(i: u32, w: u32, h: u32, c: u32) -> vec4<u32> {
    let t = i / w;
    let t2 = t / h;
    return vec4<u32>(i % w, t % h, t2 % c, t2 / c);
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
    let at = split(i, p.wo, p.ho, p.co);
    let wi = at.x; let hi = at.y; let ci = at.z; let ni = at.w;
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
    let at = split(i, p.w, p.h, p.c);
    let wi = at.x; let hi = at.y; let ci = at.z; let ni = at.w;
    var v = 0.0;
    if hi % p.stride == 0u && wi % p.stride == 0u {
        v = src[((ni * p.co + ci + p.pad) * p.ho + hi / p.stride) * p.wo + wi / p.stride];
    }
    dst[i] = v;
}

// The option-A shortcut at stride 2 on maps a multiple of 8 columns wide, four adjacent
// values per invocation (for CPU drivers, which load and store a storage buffer lane by lane
// at about the same cost for a vec4 as for an f32, and pay a vector integer division as one
// per lane: a quarter of the loads, stores and divisions of the kernels above). `p.n` counts
// vec4s of the output.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;

// Output columns 4q .. 4q + 3 of row hi are input columns 8q, 8q + 2, 8q + 4, 8q + 6 of row
// 2·hi: the even values of the input's vec4s 2q and 2q + 1.
@compute @workgroup_size(256)
fn shortcut_forward_s2v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let at = split(i, p.wo / 4u, p.ho, p.co);
    let q = at.x; let hi = at.y; let ci = at.z; let ni = at.w;
    var v = vec4<f32>(0.0);
    if ci >= p.pad && ci < p.pad + p.c {
        let j = ((ni * p.c + ci - p.pad) * p.h + 2u * hi) * (p.w / 4u) + 2u * q;
        let a = src4[j];
        let b = src4[j + 1u];
        v = vec4<f32>(a.x, a.z, b.x, b.z);
    }
    dst4[i] = v;
}

// Input-gradient columns 4q .. 4q + 3 of an even row hi take output-gradient columns 2q and
// 2q + 1 of row hi / 2 (half of its vec4 q / 2) at columns 4q and 4q + 2; odd rows and
// columns are zero.
@compute @workgroup_size(256)
fn shortcut_backward_s2v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let at = split(i, p.w / 4u, p.h, p.c);
    let q = at.x; let hi = at.y; let ci = at.z; let ni = at.w;
    var v = vec4<f32>(0.0);
    if hi % 2u == 0u {
        let s = src4[((ni * p.co + ci + p.pad) * p.ho + hi / 2u) * (p.wo / 4u) + q / 2u];
        v = select(vec4<f32>(s.x, 0.0, s.y, 0.0), vec4<f32>(s.z, 0.0, s.w, 0.0), q % 2u == 1u);
    }
    dst4[i] = v;
}
