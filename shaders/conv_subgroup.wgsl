// Dense 3×3 convolutions (padding 1, stride 1 or 2, no dilation, groups == 1) that share
// loaded values across the 8 lanes of a subgroup instead of loading them per lane: an
// experiment for lavapipe, which loads storage buffers lane by lane (see
// src/ops/conv/subgroup.rs). x [N, Cin, H, W], w [Cout, Cin, 3, 3], y [N, Cout, Ho, Wo].
//
// Not valid WGSL alone: `subgroupBroadcast` takes only a constant lane, so
// src/ops/conv/subgroup.rs writes the unrolled body of each variant (K output channels × P
// output rows per invocation, stride S) in place of the `/*...*/` markers below.
//
// A workgroup is 8 invocations = one subgroup (the kernels are only run where every
// subgroup has at least 8 lanes, so a workgroup is one whole subgroup). Every lane runs every
// subgroup operation (no early return before the stores), and lanes past the output width
// compute on zeros and store nothing.
//
// No `enable subgroups;`: naga 30 (wgpu 30) rejects it as "not yet supported" and takes
// the subgroup builtins and functions without it when the device has Features::SUBGROUP.
//
// The entry point computes a correlation of src [N, cin, h, w] (`xs`) into dst [N, cout,
// ho, wo] (`ys`); `extra` 1 adds ex[co] (bias), 2 adds ex at the output's index (a
// gradient to accumulate). forward: src = x, dst = y, weight (co, ci, tap) at
// w[co, ci, tap]. grad_x at stride 1: src = gy, dst = gx, cin = Cout, cout = Cin, weight
// (co, ci, tap) at w[ci, co, 8 − tap] (the transposed, flipped kernel).
//
// `forward`: workgroup (x: tile of P output rows × 8 output columns, y: block of K output
// channels, z: n). Per input channel, lane j loads tap j (j < 8) of each of the K channels'
// 9 weights and tap 8 of channel 8b + j: ceil(9K / 8) loads, and `subgroupBroadcast` hands
// every lane each weight. Per input row, with S = 1 each lane loads x at its column − 1 and
// x at column + 7 (only lanes 0 and 1 of the latter are used) and gets the other two taps
// with `subgroupShuffleDown` / `subgroupBroadcast`; with S = 2 each lane loads its 3 taps.

struct FwdP {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, tiles_x: u32,
    extra: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> fp: FwdP;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> ex: array<f32>;
@group(0) @binding(4) var<storage, read_write> ys: array<f32>;

// x at (row, col) of the plane starting at `base`, or 0 outside the image.
fn xat(base: u32, row: i32, col: i32) -> f32 {
    let inside = row >= 0 && row < i32(fp.h) && col >= 0 && col < i32(fp.w);
    let i = base + u32(max(row, 0)) * fp.w + u32(max(col, 0));
    return select(0.0, xs[min(i, arrayLength(&xs) - 1u)], inside);
}

@compute @workgroup_size(8)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wid.z;
    let oy0 = (wid.x / fp.tiles_x) * /*P*/;
    let ox0 = (wid.x % fp.tiles_x) * 8u;
    let ox = ox0 + lane;
    let co0 = wid.y * /*K*/;
    let plane = fp.h * fp.w;
    let iy0 = i32(oy0 * /*S*/) - 1;
/*ACC*/
    for (var ci = 0u; ci < fp.cin; ci++) {
        let base = (n * fp.cin + ci) * plane;
/*BODY*/
    }
    if ox >= fp.wo { return; }
/*STORE*/
}
