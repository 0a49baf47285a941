// Dense 3×3 convolutions at stride 2 (padding 1, no dilation, groups == 1) on maps 16 or 32
// columns wide, for lavapipe (see src/ops/conv/rows_s2.rs): one image row of x per subgroup
// row, lane l holding its C = W / 8 adjacent columns C·l .. as one VI (vec2 or vec4), and
// the C / 2 output columns C·l / 2 .. they centre as one VO (f32 or vec2): output column ox
// reads x columns 2·ox − 1, 2·ox and 2·ox + 1, the lane's own but for its left neighbour's
// last (zero at the map's left edge). So a row of x or of the output is one load.
//
// Not valid WGSL alone: src/ops/conv/rows_s2.rs sets VI, VO and LAST and writes each
// variant's unrolled body in place of the `/*...*/` markers.
//
// A workgroup is 8 invocations = one subgroup (run only where every subgroup has at least 8
// lanes). Every lane runs every subgroup operation (no early return before them).
//
// `forward`: workgroup (x: block of P output rows, y: block of K output channels, z: n). Per
// input channel lane j loads tap j (j < 8) of each of the K channels' 9 weights and tap 8 of
// channel 8b + j, and subgroupBroadcast hands every lane each weight; then the 2P + 1 input
// rows under the block, one load each; then each output (channel, row) takes its 9 products
// in turn. `extra` 1 adds bias[co].
//
// `grad_x`: workgroup (x: block of 2P rows of gx, y: block of K input channels, z: n).
// gx[ci, iy, ix] = the sum over co and the taps (ky, kx) with iy = 2·oy + ky − 1 and
// ix = 2·ox + kx − 1 of gy[co, oy, ox] · w[co, ci, ky, kx]: an even row or column of gx
// meets only the kernel's middle row or column, an odd one its first and last. Per output
// channel lane j loads tap j of each of the K input channels' 9 weights (and tap 8 of
// channel 8b + j), subgroupBroadcast hands them out, and the P + 1 rows of gy over the block
// are one load each; the lane's C columns of gx read its C / 2 columns of gy and the right
// neighbour's first (zero at the map's right edge). `extra` 2 adds a gradient to accumulate.
//
// `grad_w`: workgroup (x: block of CI input channels, y: block of KO output channels, z:
// chunk of images). gw[co, ci, ky, kx] = the sum over n, oy, ox of gy[n, co, oy, ox] ·
// x[n, ci, 2·oy + ky − 1, 2·ox + kx − 1]. Per output row: KO loads of gy and, per input
// channel, x rows 2·oy and 2·oy + 1 (row 2·oy − 1 is the previous output row's 2·oy + 1, or
// the zero padding above an image: no load); each lane adds its columns' products into
// KO·CI·9 sums, and at the end subgroupAdd sums the 8 lanes and lane 0 stores the block's
// sums in the chunk's slice of `out` (gw itself when there is one chunk, else partial sums
// that shaders/chunk_sum.wgsl adds in order).
//
// No `enable subgroups;`: naga 30 takes the subgroup builtins without it when the device has
// Features::SUBGROUP (as shaders/conv_subgroup.wgsl).

alias VI = /*VI*/;
alias VO = /*VO*/;

struct S2 {
    n: u32, cin: u32, h: u32, cout: u32,
    ho: u32, extra: u32, per_chunk: u32, numel: u32,
}

@group(0) @binding(0) var<uniform> sp: S2;
@group(0) @binding(1) var<storage, read> xs: array<VI>;

// Lane `lane`'s columns of row `row` of the x plane whose first row is `plane_row`, or zeros
// above or below the map.
fn xrow(plane_row: u32, row: i32, lane: u32) -> VI {
    let inside = row >= 0 && row < i32(sp.h);
    let i = (plane_row + u32(max(row, 0))) * 8u + lane;
    return select(VI(0.0), xs[min(i, arrayLength(&xs) - 1u)], inside);
}

// The column left of the lane's first: its left neighbour's last, zero for lane 0.
fn left_of(v: VI, lane: u32) -> f32 {
    return select(subgroupShuffleUp(/*LAST*/, 1u), 0.0, lane == 0u);
}

@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> ys: array<VO>;

@compute @workgroup_size(8)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wid.z;
    let oy0 = wid.x * /*P*/;
    let co0 = wid.y * /*K*/;
    let iy0 = 2 * i32(oy0) - 1;
/*ACC*/
    for (var ci = 0u; ci < sp.cin; ci++) {
        let plane_row = (n * sp.cin + ci) * sp.h;
/*BODY*/
    }
/*STORE*/
}

@group(0) @binding(1) var<storage, read> dys: array<VO>;
@group(0) @binding(3) var<storage, read> addend: array<VI>;
@group(0) @binding(4) var<storage, read_write> gxs: array<VI>;

// Lane `lane`'s columns of row oy of gy's channel co of image n, or zeros below the map.
fn dyrow(n: u32, co: u32, oy: u32, lane: u32) -> VO {
    let i = ((n * sp.cout + co) * sp.ho + min(oy, sp.ho - 1u)) * 8u + lane;
    return select(VO(0.0), dys[min(i, arrayLength(&dys) - 1u)], oy < sp.ho);
}

@compute @workgroup_size(8)
fn grad_x(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wid.z;
    let oy0 = wid.x * /*P*/;
    let iy0 = 2u * oy0;
    let ci0 = wid.y * /*K*/;
/*XACC*/
    for (var co = 0u; co < sp.cout; co++) {
/*XBODY*/
    }
/*XSTORE*/
}

@group(0) @binding(2) var<storage, read> gys: array<VO>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Lane `lane`'s columns of row oy of gy's channel co of image n, or zeros past the channels.
fn gyrow(n: u32, co: u32, oy: u32, lane: u32) -> VO {
    let i = ((n * sp.cout + min(co, sp.cout - 1u)) * sp.ho + oy) * 8u + lane;
    return select(VO(0.0), gys[min(i, arrayLength(&gys) - 1u)], co < sp.cout);
}

@compute @workgroup_size(8)
fn grad_w(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let ci0 = wid.x * /*CI*/;
    let co0 = wid.y * /*KO*/;
    let n0 = wid.z * sp.per_chunk;
    let n1 = min(n0 + sp.per_chunk, sp.n);
/*WACC*/
    // One loop over the chunk's (image, output row)s, as subgroup_rows' grad_w.
    for (var t = n0 * sp.ho; t < n1 * sp.ho; t++) {
        let oy = t % sp.ho;
        let n = t / sp.ho;
/*WROW*/
    }
/*WSTORE*/
}
