// Depthwise 2-D convolution at stride 1 (groups == Cin == Cout, weights [C, 1, KH, KW]), tiled
// in workgroup memory: the LSK module's 5×5 and 7×7-dilation-3 layers.
//
// Every kernel works on one tile of TH × TW outputs of `planes` consecutive (n, c) planes
// (several planes only when a tile covers a whole small plane). The workgroup first stages
// the tile's source window, (TH + (KH-1)·dil) × (TW + (KW-1)·dil) values per plane with the
// zero padding written in, so the tap loops read workgroup memory with no bounds checks and
// every source value is loaded from global memory once per tile instead of once per tap.
//
//   forward: dst = y (Ho × Wo), src = x, row offset pad, weights as stored;
//   grad_x:  dst = gx (H × W), src = gy, row offset (K-1)·dil − pad, weights flipped
//            (gx[i] = Σ_k gy[i + pad − k·dil]·w[k] is a correlation with the flipped kernel),
//            plus with accumulate the gradient x already had from its other consumers;
//   grad_w:  the tile is one of gy (Ho × Wo), src = x; each workgroup writes its KH·KW partial
//            sums per plane to partial[c, tap, n·tiles + tile], then summed over the last axis
//            (reduce.wgsl's sum_to) in a fixed order. With a bias, the tile's sum of gy per
//            plane (the bias gradient's part) goes to row bias_row + c of the same partials.

struct P {
    planes_total: u32,  // N·C
    c: u32,
    ih: u32,            // source plane height and width
    iw: u32,
    oh: u32,            // tiled (destination, or gy for grad_w) plane height and width
    ow: u32,
    kh: u32,
    kw: u32,
    dil: u32,
    pad_y: i32,         // source row of tile row 0 and tap 0 = tile's first row − pad_y
    pad_x: i32,
    th: u32,            // tile of outputs
    tw: u32,
    ah: u32,            // staged source window: th + (kh−1)·dil, tw + (kw−1)·dil
    aw: u32,
    planes: u32,        // planes per workgroup
    tiles_x: u32,       // tiles per plane along W, and in all
    tiles: u32,
    workgroups: u32,
    flip: u32,          // grad_x: read the weights in reverse tap order
    has_bias: u32,
    slices: u32,        // grad_w: row slices per (plane, tap) job
    bias_row: u32,      // grad_w: the partials' row of channel 0's bias
    accumulate: u32,    // grad_x: add gx_in (the gradient from the input's other consumers)
}

@group(0) @binding(0) var<uniform> p: P;

// forward and grad_x.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
// bias: the forward's bias, or grad_x's gx_in; bound to wt when neither is used.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// grad_w: x at binding 1 (src), then gy and the partial sums.
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

// Sizes fixed with the host (src/ops/depthwise.rs): 10 KiB + 4 KiB + 1 KiB.
var<workgroup> window: array<f32, 2560>;   // staged source windows, `planes` of ah × aw
var<workgroup> aux: array<f32, 1024>;      // weights (planes × KH·KW), or grad_w's gy tiles
var<workgroup> part: array<f32, 256>;      // grad_w's per-thread sums

// The workgroup's first plane and its tile's first output row and column, or none past the
// end (uniform across the workgroup).
struct Tile { plane0: u32, oy0: u32, ox0: u32, tile: u32 }

fn tile_of(g: u32) -> Tile {
    let t = g % p.tiles;
    return Tile((g / p.tiles) * p.planes, (t / p.tiles_x) * p.th, (t % p.tiles_x) * p.tw, t);
}

// Stages the source windows of the tile's planes, zeros outside the plane or past the
// last plane.
fn stage_window(lid: u32, tl: Tile) {
    let area = p.ah * p.aw;
    for (var i = lid; i < p.planes * area; i += 256u) {
        let pl = i / area;
        let r = i % area;
        let plane = tl.plane0 + pl;
        let iy = i32(tl.oy0 + r / p.aw) - p.pad_y;
        let ix = i32(tl.ox0 + r % p.aw) - p.pad_x;
        var v = 0.0;
        if plane < p.planes_total && iy >= 0 && iy < i32(p.ih) && ix >= 0 && ix < i32(p.iw) {
            v = src[(plane * p.ih + u32(iy)) * p.iw + u32(ix)];
        }
        window[i] = v;
    }
}

// The taps [lo, hi) along one axis that reach the source plane (len values, offset pad) from
// some of the n outputs starting at o0: the others read only padding, and a tile skips
// them (most of a 7×7 dilation-3 kernel on an 8×8 plane).
fn tap_range(o0: u32, n: u32, len: u32, pad: i32, k: u32) -> vec2<u32> {
    let d = i32(p.dil);
    let first = pad - i32(o0 + n - 1u);   // k·dil must reach this for the last output
    let last = i32(len) - 1 + pad - i32(o0);   // and stay within this for the first
    let lo = select(0, (first + d - 1) / d, first > 0);
    let hi = select(min(i32(k), last / d + 1), 0, last < 0);
    return vec2<u32>(u32(lo), u32(max(hi, lo)));
}

// forward (flip 0) and grad_x (flip 1): each thread computes every 256th output of the tile.
@compute @workgroup_size(256)
fn conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.workgroups { return; }
    let tl = tile_of(g);
    stage_window(lid, tl);
    let kk = p.kh * p.kw;
    for (var i = lid; i < p.planes * kk; i += 256u) {
        let c = (tl.plane0 + i / kk) % p.c;
        let t = i % kk;
        aux[i] = wt[c * kk + select(t, kk - 1u - t, p.flip == 1u)];
    }
    workgroupBarrier();
    let ty = tap_range(tl.oy0, min(p.th, p.oh - tl.oy0), p.ih, p.pad_y, p.kh);
    let tx = tap_range(tl.ox0, min(p.tw, p.ow - tl.ox0), p.iw, p.pad_x, p.kw);
    let outs = p.th * p.tw;
    let area = p.ah * p.aw;
    let row_step = p.dil * p.aw;
    for (var o = lid; o < p.planes * outs; o += 256u) {
        let pl = o / outs;
        let r = o % outs;
        let plane = tl.plane0 + pl;
        let oy = tl.oy0 + r / p.tw;
        let ox = tl.ox0 + r % p.tw;
        if plane >= p.planes_total || oy >= p.oh || ox >= p.ow { continue; }
        var acc = 0.0;
        var row = pl * area + (r / p.tw + ty.x * p.dil) * p.aw + r % p.tw + tx.x * p.dil;
        for (var ky = ty.x; ky < ty.y; ky++) {
            var at = row;
            var wi = pl * kk + ky * p.kw + tx.x;
            for (var kx = tx.x; kx < tx.y; kx++) {
                acc += window[at] * aux[wi];
                at += p.dil;
                wi += 1u;
            }
            row += row_step;
        }
        let at_dst = (plane * p.oh + oy) * p.ow + ox;
        if p.has_bias == 1u { acc += bias[plane % p.c]; }
        if p.accumulate == 1u { acc += bias[at_dst]; }
        dst[at_dst] = acc;
    }
}

// grad_w: job j = (plane, tap) sums gy·x over the tile, split into p.slices interleaved row
// slices; thread q takes slice q / jobs of job q % jobs (adjacent threads: adjacent taps, the
// same gy value), so jobs · slices <= 256. With a bias, each plane has one more job, after
// its taps: the sum of gy alone.
@compute @workgroup_size(256)
fn grad_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.workgroups { return; }
    let tl = tile_of(g);
    stage_window(lid, tl);
    let outs = p.th * p.tw;
    for (var i = lid; i < p.planes * outs; i += 256u) {
        let plane = tl.plane0 + i / outs;
        let oy = tl.oy0 + (i % outs) / p.tw;
        let ox = tl.ox0 + i % p.tw;
        var v = 0.0;
        if plane < p.planes_total && oy < p.oh && ox < p.ow {
            v = gy[(plane * p.oh + oy) * p.ow + ox];
        }
        aux[i] = v;
    }
    workgroupBarrier();
    let kk = p.kh * p.kw;
    let per_plane = kk + p.has_bias;
    let jobs = p.planes * per_plane;
    let area = p.ah * p.aw;
    if lid < jobs * p.slices {
        let j = lid % jobs;
        let s = lid / jobs;
        let pl = j / per_plane;
        let t = j % per_plane;
        let tap = pl * area + (t / p.kw) * p.dil * p.aw + (t % p.kw) * p.dil;
        var acc = 0.0;
        for (var r = s; r < p.th; r += p.slices) {
            var gi = pl * outs + r * p.tw;
            var xi = tap + r * p.aw;
            if t == kk {
                for (var cx = 0u; cx < p.tw; cx++) { acc += aux[gi + cx]; }
                continue;
            }
            for (var cx = 0u; cx < p.tw; cx++) {
                acc += aux[gi] * window[xi];
                gi += 1u;
                xi += 1u;
            }
        }
        part[lid] = acc;
    }
    workgroupBarrier();
    if lid < jobs {
        let plane = tl.plane0 + lid / per_plane;
        if plane < p.planes_total {
            var sum = 0.0;
            for (var s = 0u; s < p.slices; s++) { sum += part[s * jobs + lid]; }
            let splits = (p.planes_total / p.c) * p.tiles;
            let split = (plane / p.c) * p.tiles + tl.tile;
            let t = lid % per_plane;
            let row = select((plane % p.c) * kk + t, p.bias_row + plane % p.c, t == kk);
            partial[row * splits + split] = sum;
        }
    }
}
