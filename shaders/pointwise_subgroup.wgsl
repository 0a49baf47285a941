// 1×1 convolutions (stride 1, no padding, groups == 1) that share weights across the 8 lanes
// of a subgroup, for lavapipe (see src/ops/conv/pointwise_subgroup.rs): dst[n, d, i] = sum
// over s of w(d, s) · src[n, s, i] (+ a bias or a gradient to accumulate), i a pixel of the
// flattened plane. Forward: src = x, w(d, s) = w[d, s]; grad_x: src = gy, w(d, s) = w[s, d].
//
// Not valid WGSL alone: src/ops/conv/pointwise_subgroup.rs writes each variant's unrolled
// body (conv: K output channels × P runs of 8·C pixels per workgroup; grad_w: KO output × CI
// source channels) in place of the `/*...*/` markers, empties the other entry point's, and
// sets V to f32 or vec4<f32>: C = 1 or 4 adjacent pixels per lane (the plane a multiple of
// C; lavapipe loads a vec4 for about the price of an f32).
//
// A workgroup is 8 invocations = one subgroup (run only where every subgroup has at least 8
// lanes). Workgroup (x: block of 8·C·P pixels, y: block of K output channels, z: n). Per
// source channel each lane loads P V's (lane l: pixels 8·C·q + C·l .., contiguous across the
// lanes) and K / 8 weights (lane j: those of output channels 8b + j), which
// subgroupBroadcast hands to every lane: P + K / 8 loads for K·P·C multiply-adds per lane.

alias V = /*V*/;

struct PP {
    n: u32, cs: u32, cd: u32, hw: u32,
    dstride: u32, sstride: u32, extra: u32, pad0: u32,
}

@group(0) @binding(0) var<uniform> pp: PP;
@group(0) @binding(1) var<storage, read> xs: array<V>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> addend: array<V>;
@group(0) @binding(5) var<storage, read_write> ys: array<V>;

@compute @workgroup_size(8)
fn conv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wid.z;
    let d0 = wid.y * /*K*/;
    let i0 = (wid.x * 8u * /*P*/ + lane) * /*C*/;
/*ACC*/
    for (var s = 0u; s < pp.cs; s++) {
        let sb = (n * pp.cs + s) * pp.hw;
/*BODY*/
    }
/*STORE*/
}

// grad_w: gw[d, s] = sum over n and i of gy[n, d, i] · x[n, s, i]. Workgroup (x: block of
// CI source channels, y: block of KO output channels, z: chunk of images); lane l takes the
// C pixels 8·C·q + C·l .. of each image's plane, so each run of 8·C pixels costs KO + CI
// loads for KO·CI·C multiply-adds per lane. At the end subgroupAdd sums the lanes and lane 0 stores the block's
// sums in the chunk's slice of `gout` (gw itself when there is one chunk, else partial sums
// that `reduce` adds in chunk order).
// numel: a chunk's sums, Cout·Cin weights then, with has_bias, Cout bias sums (gb[d] = the
// sum of gy[., d, .], taken by the workgroups of the first source block).
struct WP {
    n: u32, cin: u32, cout: u32, hw: u32,
    per_chunk: u32, chunks: u32, numel: u32, has_bias: u32,
}

@group(0) @binding(0) var<uniform> wp: WP;
@group(0) @binding(1) var<storage, read> wx: array<V>;
@group(0) @binding(2) var<storage, read> wgy: array<V>;
@group(0) @binding(3) var<storage, read_write> gout: array<f32>;

@compute @workgroup_size(8)
fn grad_w(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let s0 = wid.x * /*CI*/;
    let d0 = wid.y * /*KO*/;
    let n0 = wid.z * wp.per_chunk;
    let n1 = min(n0 + wp.per_chunk, wp.n);
/*WACC*/
    for (var n = n0; n < n1; n++) {
        for (var i0 = 0u; i0 < wp.hw; i0 += 8u * /*C*/) {
            let live = i0 + lane * /*C*/ < wp.hw;
            let at = min(i0 + lane * /*C*/, wp.hw - /*C*/) / /*C*/;
/*WBODY*/
        }
    }
/*WSTORE*/
}

// gw[k] (and gb[k − Cout·Cin] past the weights) = the sum of the chunks' partial sums
// pin[c · numel + k] in chunk order.
@group(0) @binding(1) var<storage, read> pin: array<f32>;
@group(0) @binding(2) var<storage, read_write> gw: array<f32>;
@group(0) @binding(3) var<storage, read_write> gb: array<f32>;

@compute @workgroup_size(64)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 64u;
    if k >= wp.numel { return; }
    var s = 0.0;
    for (var c = 0u; c < wp.chunks; c++) {
        s += pin[c * wp.numel + k];
    }
    let weights = wp.cout * wp.cin;
    if k < weights {
        gw[k] = s;
    } else {
        gb[k - weights] = s;
    }
}
