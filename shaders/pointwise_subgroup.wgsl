// 1×1 convolutions (stride 1, no padding, groups == 1) that share weights across the 8 lanes
// of a subgroup, for lavapipe (see src/ops/conv/pointwise_subgroup.rs): dst[n, d, i] = sum
// over s of w(d, s) · src[n, s, i] (+ a bias or a gradient to accumulate), i a pixel of the
// flattened plane. Forward: src = x, w(d, s) = w[d, s]; grad_x: src = gy, w(d, s) = w[s, d].
//
// Not valid WGSL alone: src/ops/conv/pointwise_subgroup.rs writes each variant's unrolled
// body (K output channels × P runs of 8 pixels per workgroup) in place of the `/*...*/`
// markers.
//
// A workgroup is 8 invocations = one subgroup (run only where every subgroup has at least 8
// lanes). Workgroup (x: block of 8·P pixels, y: block of K output channels, z: n). Per source
// channel each lane loads P pixels (lane l: pixels 8q + l, contiguous across the lanes) and
// K / 8 weights (lane j: those of output channels 8b + j), which subgroupBroadcast hands to
// every lane: P + K / 8 loads for K·P multiply-adds per lane.

struct PP {
    n: u32, cs: u32, cd: u32, hw: u32,
    dstride: u32, sstride: u32, extra: u32, pad0: u32,
}

@group(0) @binding(0) var<uniform> pp: PP;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> ex: array<f32>;
@group(0) @binding(4) var<storage, read_write> ys: array<f32>;

@compute @workgroup_size(8)
fn conv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wid.z;
    let d0 = wid.y * /*K*/;
    let i0 = wid.x * 8u * /*P*/ + lane;
/*ACC*/
    for (var s = 0u; s < pp.cs; s++) {
        let sb = (n * pp.cs + s) * pp.hw;
/*BODY*/
    }
/*STORE*/
}
