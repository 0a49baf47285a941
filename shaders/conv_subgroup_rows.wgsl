// Dense 3×3 convolutions at stride 1 (padding 1, no dilation, groups == 1) on maps a
// multiple of 8 columns wide or 4, for lavapipe, which loads a storage buffer lane by
// lane at about the same cost for a vec4 as for an f32 (see src/ops/conv/subgroup_rows.rs).
// One subgroup of 8 lanes holds a "row" of 8·C values, lane l C adjacent columns as one `V`
// (f32, vec2 or vec4), so such a row costs one load:
// - maps 4 or 8 wide: C = 4 and a row is G = 32 / W image rows (LR = 8 / G lanes each);
//   the image rows above and below a lane's come from the lanes LR up or down, or from the
//   rows before and after;
// - else a row is a tile of 8·C columns of one image row (C = 4, 2 or 1, the largest that
//   divides it; G = 1, LR = 8), and lanes 0 and 7 read the column past the tile.
// The inner column taps come from the neighbouring lanes by subgroupShuffleUp /
// subgroupShuffleDown (zero past the map's edges).
//
// Not valid WGSL alone: src/ops/conv/subgroup_rows.rs sets V, FIRST, LAST, G and LR and
// writes each variant's unrolled body in place of the `/*...*/` markers.
//
// A workgroup is 8 invocations = one subgroup (run only where every subgroup has at least 8
// lanes). Every lane runs every subgroup operation (no early return before them).
//
// `forward`: workgroup (x: tile and block of P output rows of G image rows each, y: block of
// K output channels,
// z: n). It computes a correlation of src [N, cin, h, w] (`xs`) into dst [N, cout, h, w]
// (`ys`); `extra` 1 adds bias[co], 2 adds addend at the output's index (a gradient to
// accumulate). forward: src = x, dst = y, weight (co, ci, tap) at w[co, ci, tap]. grad_x:
// src = gy, dst = gx, cin = Cout, cout = Cin, weight (co, ci, tap) at w[ci, co, 8 − tap]
// (the transposed, flipped kernel). Per input channel lane j loads tap j (j < 8) of each of
// the K channels' 9 weights and tap 8 of channel 8b + j, and subgroupBroadcast hands every
// lane each weight; then the P + 2 input rows, one load each; then each output (channel,
// row) takes its 9 products in turn.
//
// `grad_w`: workgroup (x: block of CI input channels, y: block of KO output channels, z:
// chunk of images). gw[co, ci, ky, kx] = the sum over n, oy, ox of gy[n, co, oy, ox] ·
// x[n, ci, oy + ky − 1, ox + kx − 1]. Walking each tile's rows down, a row costs KO loads of
// gy and, per input channel, one new x row (the other two kept from the rows before); each
// lane adds its C columns' products into KO·CI·9 sums, and at the end subgroupAdd sums the 8
// lanes and lane 0 stores the block's sums in the chunk's slice of `out` (gw itself when
// there is one chunk, else partial sums that shaders/chunk_sum.wgsl adds in order).
//
// No `enable subgroups;`: naga 30 takes the subgroup builtins without it when the device has
// Features::SUBGROUP (as shaders/conv_subgroup.wgsl).

alias V = /*V*/;

struct RowP {
    n: u32, cin: u32, h: u32, cout: u32,
    extra: u32, per_chunk: u32, numel: u32, tiles: u32,
}

@group(0) @binding(0) var<uniform> rp: RowP;
@group(0) @binding(1) var<storage, read> xs: array<V>;

const G: u32 = /*G*/;
const LR: u32 = /*LR*/;
// Whether an image row spans several tiles. Where it is one tile, the reads of the tiles
// beside it are left out of the kernel: lavapipe runs code that no lane takes under a mask
// rather than jumping over it, so a load in a branch no lane enters still costs.
const MULTI_TILE: bool = /*MULTI*/;

fn first_of(v: V) -> f32 { return /*FIRST*/; }
fn last_of(v: V) -> f32 { return /*LAST*/; }

// Lane `lane`'s columns of tile `tile` of row `row` (image rows G·row ..) of the plane whose
// first image row is row `plane_row` of xs, or zeros outside the map.
fn xrow(plane_row: u32, row: i32, tile: u32, lane: u32) -> V {
    let image_row = row * i32(G) + i32(lane / LR);
    let inside = row >= 0 && image_row < i32(rp.h);
    let i = plane_row * rp.tiles * 8u / G + u32(max(row, 0)) * rp.tiles * 8u + tile * 8u + lane;
    return select(V(0.0), xs[min(i, arrayLength(&xs) - 1u)], inside);
}

// The image row above each lane's (G > 1): LR lanes up, or for the first image row of `cur`
// the last of `prev`.
fn above(prev: V, cur: V, lane: u32) -> V {
    return select(subgroupShuffleUp(cur, LR), subgroupShuffleDown(prev, 8u - LR), lane < LR);
}

// The image row below each lane's (G > 1): LR lanes down, or for the last image row of `cur`
// the first of `next`.
fn below(cur: V, next: V, lane: u32) -> V {
    return select(subgroupShuffleDown(cur, LR), subgroupShuffleUp(next, 8u - LR), lane >= 8u - LR);
}

// above and below for one f32 per lane (src/ops/conv/winograd_rows.rs: a row's transformed
// values, which move between lanes as the columns they were made from).
fn above_f32(prev: f32, cur: f32, lane: u32) -> f32 {
    return select(subgroupShuffleUp(cur, LR), subgroupShuffleDown(prev, 8u - LR), lane < LR);
}

fn below_f32(cur: f32, next: f32, lane: u32) -> f32 {
    return select(subgroupShuffleDown(cur, LR), subgroupShuffleUp(next, 8u - LR), lane >= 8u - LR);
}

// The column left of the lane's first: its left neighbour's last; an image row's first lane
// reads the previous tile's last column (zero at the map's left edge).
fn left_of(v: V, plane_row: u32, row: i32, tile: u32, lane: u32) -> f32 {
    var l = subgroupShuffleUp(last_of(v), 1u);
    if lane % LR == 0u {
        l = 0.0;
        if MULTI_TILE && tile > 0u {
            l = last_of(xrow(plane_row, row, tile - 1u, 7u));
        }
    }
    return l;
}

// The column right of the lane's last: its right neighbour's first; an image row's last lane
// reads the next tile's first column (zero at the map's right edge).
fn right_of(v: V, plane_row: u32, row: i32, tile: u32, lane: u32) -> f32 {
    var r = subgroupShuffleDown(first_of(v), 1u);
    if lane % LR == LR - 1u {
        r = 0.0;
        if MULTI_TILE && tile + 1u < rp.tiles {
            r = first_of(xrow(plane_row, row, tile + 1u, 0u));
        }
    }
    return r;
}

@group(0) @binding(2) var<storage, read> wt: array</*WT*/>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> addend: array<V>;
@group(0) @binding(5) var<storage, read_write> ys: array<V>;

@compute @workgroup_size(8)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wid.z;
    let tile = wid.x % rp.tiles;
    let oy0 = (wid.x / rp.tiles) * /*P*/;
    let co0 = wid.y * /*K*/;
    let iy0 = i32(oy0) - 1;
/*ACC*/
    for (var ci = 0u; ci < rp.cin; ci++) {
        let plane_row = (n * rp.cin + ci) * rp.h;
/*BODY*/
    }
/*STORE*/
}

@group(0) @binding(2) var<storage, read> gys: array<V>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Lane `lane`'s columns of tile `tile` of gy's row oy (image rows G·oy ..) of channel co of
// image n, or zeros past the channels or rows.
fn gyrow(n: u32, co: u32, oy: u32, tile: u32, lane: u32) -> V {
    let plane_row = (n * rp.cout + min(co, rp.cout - 1u)) * rp.h;
    let i = plane_row * rp.tiles * 8u / G + oy * rp.tiles * 8u + tile * 8u + lane;
    let inside = co < rp.cout && oy * G + lane / LR < rp.h;
    return select(V(0.0), gys[min(i, arrayLength(&gys) - 1u)], inside);
}

@compute @workgroup_size(8)
fn grad_w(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let ci0 = wid.x * /*CI*/;
    let co0 = wid.y * /*KO*/;
    let n0 = wid.z * rp.per_chunk;
    let n1 = min(n0 + rp.per_chunk, rp.n);
/*WACC*/
    // One loop over the chunk's (image, tile, subgroup row)s, a row that starts an image's
    // tile first (re)loading the window: with a loop per image and tile inside the chunk's,
    // lavapipe spent about as long entering and leaving the inner loop as in it on maps of
    // 2 subgroup rows (64→64 8×8: 13.5 ms against 6.6; the 8-wide layers' grad_w in the
    // plain step's profile 123-134 → 74-89 ms).
    let rows = (rp.h + G - 1u) / G;
    for (var t = n0 * rp.tiles * rows; t < n1 * rp.tiles * rows; t++) {
        let oy = t % rows;
        let tile = t / rows % rp.tiles;
        let n = t / (rows * rp.tiles);
/*WPLANES*/
        if oy == 0u {
/*WSTART*/
        }
/*WROW*/
    }
/*WSTORE*/
}
