// grad_w of dense 3×3 convolutions (padding 1, stride 1 or 2, no dilation, groups == 1)
// sharing loads across the 8 lanes of a subgroup, for lavapipe (see
// src/ops/conv/subgroup_w.rs). x [N, Cin, H, W], gy [N, Cout, Ho, Wo], gw [Cout, Cin, 3, 3]:
// gw[co, ci, ky, kx] = sum over n, oy, ox of gy[n, co, oy, ox] · x[n, ci, S·oy + ky − 1,
// S·ox + kx − 1].
//
// Not valid WGSL alone: src/ops/conv/subgroup_w.rs writes each variant's unrolled body (KO
// output channels × CI input channels per workgroup) in place of the `/*...*/` markers.
//
// A workgroup is 8 invocations = one subgroup (run only where every subgroup has at least 8
// lanes). Workgroup (x: block of CI input channels, y: block of KO output channels, z: chunk
// of images). Lane l takes output column 8·tile + l of every row of its chunk's images, walks
// the rows down, and keeps three kernel rows of x taps per input channel: a new output row
// costs KO loads of gy and, per input channel, one new x row at stride 1 (two loads, the
// other taps by subgroupShuffleDown / subgroupBroadcast) or two at stride 2 (three loads
// each). Each lane sums 9·KO·CI products per row into its own accumulators; at the end
// subgroupAdd sums the 8 lanes and lane 0 stores the block's sums in the chunk's slice of
// `out` (gw itself when there is one chunk, else partial sums that shaders/chunk_sum.wgsl adds
// in order).
//
// No `enable subgroups;`: naga 30 takes the subgroup builtins without it when the device
// has Features::SUBGROUP (as shaders/conv_subgroup.wgsl).

struct WP {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, tiles_x: u32,
    per_chunk: u32, numel: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> wp: WP;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// x at (row, col) of the plane starting at `base`, or 0 outside the image.
fn xat(base: u32, row: i32, col: i32) -> f32 {
    let inside = row >= 0 && row < i32(wp.h) && col >= 0 && col < i32(wp.w);
    let i = base + u32(max(row, 0)) * wp.w + u32(max(col, 0));
    return select(0.0, xs[min(i, arrayLength(&xs) - 1u)], inside);
}

// The three taps (kx = 0, 1, 2) of x row `row` for lane `lane`'s output column at stride 1:
// its own load at column − 1 and its neighbours' (one load at column + 7 covers the last
// lanes' right-hand taps).
fn taps_s1(base: u32, row: i32, ox0: u32, lane: u32) -> vec3<f32> {
    let v = xat(base, row, i32(ox0 + lane) - 1);
    let h = xat(base, row, i32(ox0 + 7u + lane));
    let h0 = subgroupBroadcast(h, 0u);
    let t1 = select(subgroupShuffleDown(v, 1u), h0, lane == 7u);
    let t2 = select(select(subgroupShuffleDown(v, 2u), h0, lane == 6u), subgroupBroadcast(h, 1u), lane == 7u);
    return vec3<f32>(v, t1, t2);
}

// The same at stride 2: columns 2·ox − 1, 2·ox and 2·ox + 1, three loads.
fn taps_s2(base: u32, row: i32, ox: u32) -> vec3<f32> {
    let c = i32(ox * 2u) - 1;
    return vec3<f32>(xat(base, row, c), xat(base, row, c + 1), xat(base, row, c + 2));
}

// gy at (n, co, oy, ox), or 0 past the output's width or channels.
fn gyat(n: u32, co: u32, oy: u32, ox: u32) -> f32 {
    let i = ((n * wp.cout + min(co, wp.cout - 1u)) * wp.ho + oy) * wp.wo + min(ox, wp.wo - 1u);
    return select(0.0, gy[i], ox < wp.wo && co < wp.cout);
}

@compute @workgroup_size(8)
fn grad_w(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let ci0 = wid.x * /*CI*/;
    let co0 = wid.y * /*KO*/;
    let n0 = wid.z * wp.per_chunk;
    let n1 = min(n0 + wp.per_chunk, wp.n);
    let plane = wp.h * wp.w;
/*ACC*/
    for (var n = n0; n < n1; n++) {
        for (var tile = 0u; tile < wp.tiles_x; tile++) {
            let ox0 = tile * 8u;
            let ox = ox0 + lane;
/*START*/
            for (var oy = 0u; oy < wp.ho; oy++) {
/*ROW*/
            }
        }
    }
/*STORE*/
}
