// Depthwise KS×KS convolutions (groups == C, stride 1, dilation DIL, "same" padding PAD =
// (KS − 1)·DIL / 2), and dense ones of a few channels, that share loaded values across the 8
// lanes of a subgroup, for lavapipe (see src/ops/conv/depthwise_subgroup.rs). Source [N, c,
// H, W] (dp.c channels), output [N, dp.d, H, W].
//
// Not valid WGSL alone: src/ops/conv/depthwise_subgroup.rs writes each variant's unrolled
// body (KS, DIL, P output rows per invocation, C columns per lane) in place of the `/*...*/`
// markers, and sets V to f32, vec2<f32> or vec4<f32> (C = 1, 2, 4; W a multiple of C).
//
// A workgroup is 8 invocations = one subgroup (run only where every subgroup has at least 8
// lanes). Workgroup (x: tile of P output rows × 8·C output columns, y: output channel, z: n);
// lane l holds output columns 8·C·tile + C·l .. + C − 1 as one V. Per source row the tile
// needs, the 8 lanes load the tile's columns and HALO = ceil(PAD / C)·C more on each side as
// V's, in ceil((8 + 2·HALO / C) / 8) loads (one V per lane each: lavapipe loads a vec4 for
// about the price of an f32), and every lane gets its KS taps (each a V of C columns) by
// subgroupShuffleDown / subgroupShuffleUp of those V's and their components; each tap then
// serves every output row whose kernel row reaches that source row. Source rows outside the
// image (the same for the whole subgroup) are skipped.
//
// forward: src = x, y = src ⋆ w + bias (extra 1). grad_x: src = gy, the kernel flipped (flip
// 1: with "same" padding and stride 1 the gradient of a correlation is the correlation with
// the flipped kernel), plus a gradient to accumulate (extra 2).

alias V = /*V*/;

// Output channel d sums `sg` source channels: channel d · dsrc + s for s < sg (depthwise: sg
// 1, dsrc 1; dense: sg = the source channels, dsrc 0), with weight tap t of (d, s) at
// w[d · wsd + s · wss + t] (flipped for grad_x).
struct DP {
    n: u32, c: u32, h: u32, w: u32,
    tiles_x: u32, flip: u32, extra: u32, d: u32,
    sg: u32, dsrc: u32, wsd: u32, wss: u32,
}

@group(0) @binding(0) var<uniform> dp: DP;
@group(0) @binding(1) var<storage, read> xs: array<V>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> addend: array<V>;
@group(0) @binding(5) var<storage, read_write> ys: array<V>;

// src's C columns from (row, col) of the plane starting at `base` (col a multiple of C), or
// zeros outside the image.
fn xat(base: u32, row: i32, col: i32) -> V {
    let inside = row >= 0 && row < i32(dp.h) && col >= 0 && col < i32(dp.w);
    let i = (base + u32(max(row, 0)) * dp.w + u32(max(col, 0))) / /*C*/;
    return select(V(0.0), xs[min(i, arrayLength(&xs) - 1u)], inside);
}

// Weight tap t of (output channel d, source s), flipped for grad_x.
fn wat(d: u32, s: u32, t: u32) -> f32 {
    return wt[d * dp.wsd + s * dp.wss + select(t, /*KK*/ - 1u - t, dp.flip == 1u)];
}

@compute @workgroup_size(8)
fn conv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wid.z;
    let c = wid.y;
    let oy0 = (wid.x / dp.tiles_x) * /*P*/;
    let ox0 = (wid.x % dp.tiles_x) * 8u * /*C*/;
    let ox = ox0 + lane * /*C*/;
    let plane = dp.h * dp.w;
    let col0 = i32(ox) - /*HALO*/;
/*ACC*/
    for (var s = 0u; s < dp.sg; s++) {
    let base = (n * dp.c + c * dp.dsrc + s) * plane;
/*WEIGHTS*/
/*BODY*/
    }
    let base = (n * dp.d + c) * plane;
    if ox >= dp.w { return; }
/*STORE*/
}

// grad_w: gw[d, s, ky, kx] = sum over n, oy, ox of gy[n, d, oy, ox] · x[n, s, oy + ky·DIL −
// PAD, ox + kx·DIL − PAD] (depthwise: s = d), and gb[d] = the sum of gy. Workgroup (x: pair, y:
// chunk of the channel's (image, tile) items, tiles as `conv`'s). Per item each lane loads gy
// at its C columns in the tile's P rows, then the tile's source rows as `conv` does, and adds
// gy · tap for every (output row, kernel row) pair that meet. At the end subgroupAdd sums the
// lanes, and lane 0 stores the KS² + 1 sums in the chunk's row of `wout`; `w_reduce` adds the
// chunks in order.
// The workgroups' (output, source) channel pairs: c of them, pair k taking x channel k % cx
// and gy channel k / cin_g (depthwise: c = cx = cy channels, cin_g 1; dense: c = Cout·Cin,
// cx = Cin, cy = Cout, cin_g = Cin).
struct GP {
    n: u32, c: u32, h: u32, w: u32,
    tiles_x: u32, tiles: u32, per_chunk: u32, chunks: u32,
    has_bias: u32, cx: u32, cy: u32, cin_g: u32,
}

@group(0) @binding(0) var<uniform> gp: GP;
@group(0) @binding(1) var<storage, read> wx: array<V>;
@group(0) @binding(2) var<storage, read> wgy: array<V>;
@group(0) @binding(3) var<storage, read_write> wout: array<f32>;

// x's C columns from (row, col) of the plane starting at `base` (col a multiple of C), or
// zeros outside the image.
fn wxat(base: u32, row: i32, col: i32) -> V {
    let inside = row >= 0 && row < i32(gp.h) && col >= 0 && col < i32(gp.w);
    let i = (base + u32(max(row, 0)) * gp.w + u32(max(col, 0))) / /*C*/;
    return select(V(0.0), wx[min(i, arrayLength(&wx) - 1u)], inside);
}

// gy's C columns at (row, col) of the plane starting at `base`, or zeros outside the image.
fn gyat(base: u32, row: u32, col: u32) -> V {
    let i = (base + min(row, gp.h - 1u) * gp.w + min(col, gp.w - 1u)) / /*C*/;
    return select(V(0.0), wgy[i], row < gp.h && col < gp.w);
}

@compute @workgroup_size(8)
fn grad_w(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let c = wid.x;
    let i0 = wid.y * gp.per_chunk;
    let i1 = min(i0 + gp.per_chunk, gp.n * gp.tiles);
    let plane = gp.h * gp.w;
/*WACC*/
    for (var it = i0; it < i1; it++) {
        let n = it / gp.tiles;
        let tile = it % gp.tiles;
        let oy0 = (tile / gp.tiles_x) * /*P*/;
        let ox0 = (tile % gp.tiles_x) * 8u * /*C*/;
        let ox = ox0 + lane * /*C*/;
        let base = (n * gp.cx + c % gp.cx) * plane;
        let gbase = (n * gp.cy + c / gp.cin_g) * plane;
        let col0 = i32(ox) - /*HALO*/;
/*WBODY*/
    }
/*WSTORE*/
}

// gw[pair, t] (t < KS²) and gb[d] (t == KS², with has_bias, from the pair (d, 0)) = the sum
// over the chunks of wpart[chunk, pair, t], in chunk order.
@group(0) @binding(1) var<storage, read> wpart: array<f32>;
@group(0) @binding(2) var<storage, read_write> rgw: array<f32>;
@group(0) @binding(3) var<storage, read_write> rgb: array<f32>;

@compute @workgroup_size(64)
fn w_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let numel = gp.c * (/*KK*/ + 1u);
    let k = gid.x;
    if k >= numel { return; }
    var s = 0.0;
    for (var j = 0u; j < gp.chunks; j++) {
        s += wpart[j * numel + k];
    }
    let c = k / (/*KK*/ + 1u);
    let t = k % (/*KK*/ + 1u);
    if t < /*KK*/ {
        rgw[c * /*KK*/ + t] = s;
    } else if gp.has_bias == 1u && c % gp.cin_g == 0u {
        rgb[c / gp.cin_g] = s;
    }
}
