// Depthwise 2-D convolution at stride 1 (groups == Cin == Cout, weights [C, 1, KH, KW]): the
// LSK module's 5×5 and 7×7-dilation-3 layers.
//
// Every kernel but conv_columns works on one tile of TH × TW outputs of `planes` consecutive
// (n, c) planes (several planes only when a tile covers a whole small plane). All but the
// two column kernels first stage the tile's source window, (TH + (KH-1)·dil) ×
// (TW + (KW-1)·dil) values per plane with the zero padding written in, so the tap loops read
// workgroup memory with no bounds checks and every source value is loaded from global memory
// once per tile instead of once per tap. The column kernels read global memory (through the
// cache) instead: on the H100 they beat the staged ones, whose workgroup arrays cost occupancy.
//
//   forward: dst = y (Ho × Wo), src = x, row offset pad, weights as stored;
//   grad_x:  dst = gx (H × W), src = gy, row offset (K-1)·dil − pad, weights flipped
//            (gx[i] = Σ_k gy[i + pad − k·dil]·w[k] is a correlation with the flipped kernel),
//            plus with accumulate the gradient x already had from its other consumers;
//   conv_strip: forward or grad_x as above, each thread computing 4 outputs of one column
//            dil rows apart (rows y, y+dil, y+2·dil, y+3·dil): down a column of taps, the
//            4 outputs of tap ky+1 read 3 of the window values of tap ky, so the thread keeps
//            them in registers and loads one value per tap instead of 4;
//   conv_columns: conv_strip's 4 outputs per thread read straight from memory (no tiles);
//   grad_w_strip: one plane's tile of gy (tw columns), each thread summing over the tile's
//            rows for one column and 4 taps down a column of the kernel (kx, ky0 .. ky0+3):
//            one gy and one x value loaded per row for 4 products, as in conv_strip;
//   grad_w_columns: grad_w_strip's sums read straight from memory, without the window;
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
// last plane. Each thread's (plane, row, column) is advanced by 256 values per step without
// dividing (integer division costs as much as a tap here), and 4 values are loaded before
// any is stored, so that the 4 loads' latencies overlap.
fn stage_window(lid: u32, tl: Tile) {
    let area = p.ah * p.aw;
    let total = p.planes * area;
    var at = vec3<u32>(lid / area, (lid % area) / p.aw, lid % p.aw);
    for (var i = lid; i < total; i += 1024u) {
        let at1 = window_step(at);
        let at2 = window_step(at1);
        let at3 = window_step(at2);
        let v0 = window_value(at, tl);
        let v1 = window_value(at1, tl);
        let v2 = window_value(at2, tl);
        let v3 = window_value(at3, tl);
        window[i] = v0;
        if i + 256u < total { window[i + 256u] = v1; }
        if i + 512u < total { window[i + 512u] = v2; }
        if i + 768u < total { window[i + 768u] = v3; }
        at = window_step(at3);
    }
}

// (plane, row, column) in the staged windows 256 values further on.
fn window_step(at: vec3<u32>) -> vec3<u32> {
    let area = p.ah * p.aw;
    var pl = at.x + 256u / area;
    var ry = at.y + (256u % area) / p.aw;
    var rx = at.z + 256u % p.aw;
    if rx >= p.aw {
        rx -= p.aw;
        ry += 1u;
    }
    if ry >= p.ah {
        ry -= p.ah;
        pl += 1u;
    }
    return vec3<u32>(pl, ry, rx);
}

// The source value at (plane, row, column) of the staged windows, 0 outside the source.
fn window_value(at: vec3<u32>, tl: Tile) -> f32 {
    let plane = tl.plane0 + at.x;
    let iy = i32(tl.oy0 + at.y) - p.pad_y;
    let ix = i32(tl.ox0 + at.z) - p.pad_x;
    if plane < p.planes_total && iy >= 0 && iy < i32(p.ih) && ix >= 0 && ix < i32(p.iw) {
        return src[(plane * p.ih + u32(iy)) * p.iw + u32(ix)];
    }
    return 0.0;
}

// Stages the weights of the tile's planes, in reverse tap order for grad_x.
fn stage_weights(lid: u32, tl: Tile) {
    let kk = p.kh * p.kw;
    for (var i = lid; i < p.planes * kk; i += 256u) {
        let c = (tl.plane0 + i / kk) % p.c;
        let t = i % kk;
        aux[i] = wt[c * kk + select(t, kk - 1u - t, p.flip == 1u)];
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
    stage_weights(lid, tl);
    workgroupBarrier();
    let kk = p.kh * p.kw;
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

// forward (flip 0) and grad_x (flip 1) in strips: the tile has th / 4 thread rows of tw
// threads per plane; thread row r covers the 4 output rows (r / dil)·4·dil + r % dil + j·dil,
// j < 4 (th is a multiple of 4·dil), so that the next tap down a column is the next window
// value down it. The window has dil more rows than the taps reach (ah = th + kh·dil): the
// last tap's load of the row after it stays inside the array.
@compute @workgroup_size(256)
fn conv_strip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.workgroups { return; }
    let tl = tile_of(g);
    stage_window(lid, tl);
    stage_weights(lid, tl);
    workgroupBarrier();
    let per_plane = p.tw * (p.th / 4u);
    let pl = lid / per_plane;
    let r = (lid % per_plane) / p.tw;
    let lx = lid % p.tw;
    let ly = strip_row(r);
    let plane = tl.plane0 + pl;
    let ox = tl.ox0 + lx;
    let oy = tl.oy0 + ly;
    if pl >= p.planes || plane >= p.planes_total || ox >= p.ow || oy >= p.oh { return; }
    let ty = tap_range(tl.oy0, min(p.th, p.oh - tl.oy0), p.ih, p.pad_y, p.kh);
    let tx = tap_range(tl.ox0, min(p.tw, p.ow - tl.ox0), p.iw, p.pad_x, p.kw);
    let kk = p.kh * p.kw;
    let step = p.dil * p.aw;
    var acc = vec4<f32>(0.0);
    for (var kx = tx.x; kx < tx.y; kx++) {
        var at = pl * p.ah * p.aw + (ly + ty.x * p.dil) * p.aw + lx + kx * p.dil;
        var v = vec4<f32>(window[at], window[at + step], window[at + 2u * step],
                          window[at + 3u * step]);
        var wi = pl * kk + ty.x * p.kw + kx;
        for (var ky = ty.x; ky < ty.y; ky++) {
            acc += v * aux[wi];
            at += step;
            v = vec4<f32>(v.yzw, window[at + 3u * step]);
            wi += p.kw;
        }
    }
    put_strip(plane, oy, ox, acc);
}

// The first of thread row r's 4 output rows (rows dil apart, 4·dil rows per dil thread
// rows): conv_strip's within its tile, conv_columns' within its plane.
fn strip_row(r: u32) -> u32 {
    return (r / p.dil) * 4u * p.dil + r % p.dil;
}

// Stores the 4 outputs of column ox, rows oy + j·dil (those inside the plane), adding the
// bias and, for grad_x with accumulate, the gradient from the input's other consumers.
// `sums` is a parameter, so it is indexed as a value: a dynamic index into a variable would
// keep it in memory on some drivers (local memory on NVIDIA's) for the whole tap loop.
fn put_strip(plane: u32, oy: u32, ox: u32, sums: vec4<f32>) {
    var b = 0.0;
    if p.has_bias == 1u { b = bias[plane % p.c]; }
    for (var j = 0u; j < 4u; j++) {
        let y = oy + j * p.dil;
        if y >= p.oh { break; }
        let at_dst = (plane * p.oh + y) * p.ow + ox;
        var out = sums[j] + b;
        if p.accumulate == 1u { out += bias[at_dst]; }
        dst[at_dst] = out;
    }
}

// forward (flip 0) and grad_x (flip 1) in columns straight from memory, no window: thread
// (plane, row group r, column x) computes the 4 outputs of conv_strip's thread row r in
// column x, loading one source value per tap down each kernel column; neighbouring threads
// read neighbouring columns, and the cache serves the rows and columns that threads share.
// No workgroup memory, so as many workgroups fit on a core as its registers allow.
@compute @workgroup_size(256)
fn conv_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * 256u + lid;
    let groups = p.dil * ((p.oh + 4u * p.dil - 1u) / (4u * p.dil));
    if t >= p.planes_total * groups * p.ow { return; }
    let ox = t % p.ow;
    let r = (t / p.ow) % groups;
    let plane = t / (p.ow * groups);
    let oy = strip_row(r);
    if oy >= p.oh { return; }
    let kk = p.kh * p.kw;
    let wb = (plane % p.c) * kk;
    let d = i32(p.dil);
    let y0 = i32(oy) - p.pad_y;
    let x0 = i32(ox) - p.pad_x;
    var acc = vec4<f32>(0.0);
    for (var kx = 0u; kx < p.kw; kx++) {
        let ix = x0 + i32(kx) * d;
        if ix < 0 || ix >= i32(p.iw) { continue; }
        let col = plane * p.ih * p.iw + u32(ix);
        var v = vec4<f32>(src_at(col, y0), src_at(col, y0 + d), src_at(col, y0 + 2 * d),
                          src_at(col, y0 + 3 * d));
        var iy = y0 + 4 * d;
        for (var ky = 0u; ky < p.kh; ky++) {
            let tap = ky * p.kw + kx;
            acc += v * wt[wb + select(tap, kk - 1u - tap, p.flip == 1u)];
            v = vec4<f32>(v.yzw, src_at(col, iy));
            iy += d;
        }
    }
    put_strip(plane, oy, ox, acc);
}

// Row iy of the source column that starts at `col`, 0 outside the plane.
fn src_at(col: u32, iy: i32) -> f32 {
    if iy < 0 || iy >= i32(p.ih) { return 0.0; }
    return src[col + u32(iy) * p.iw];
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

// grad_w in strips (one plane per workgroup): thread (group, lx) with group = quad·kw + kx
// sums gy[y, lx]·x[y + (ky0 + j)·dil, lx + kx·dil] over the tile's rows y for j < 4,
// ky0 = 4·quad, walking the rows dil apart so that each x value moves one tap up; rows past
// the kernel (ky0 + j >= kh) are summed and dropped. The window has the 4·quads·dil rows
// below the tile that this reaches. put_tap_sums writes the tile's partial sums.
@compute @workgroup_size(256)
fn grad_w_strip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.workgroups { return; }
    let tl = tile_of(g);
    stage_window(lid, tl);
    let outs = p.th * p.tw;
    for (var i = lid; i < outs; i += 256u) {
        let oy = tl.oy0 + i / p.tw;
        let ox = tl.ox0 + i % p.tw;
        var v = 0.0;
        if tl.plane0 < p.planes_total && oy < p.oh && ox < p.ow {
            v = gy[(tl.plane0 * p.oh + oy) * p.ow + ox];
        }
        aux[i] = v;
    }
    workgroupBarrier();
    let lx = lid % p.tw;
    let grp = lid / p.tw;
    var acc = vec4<f32>(0.0);
    var gsum = 0.0;
    if grp < p.kw * ((p.kh + 3u) / 4u) {
        let kx = grp % p.kw;
        let ky0 = (grp / p.kw) * 4u;
        let step = p.dil * p.aw;
        for (var r = 0u; r < p.dil; r++) {
            var at = (r + ky0 * p.dil) * p.aw + lx + kx * p.dil;
            var v = vec4<f32>(window[at], window[at + step], window[at + 2u * step],
                              window[at + 3u * step]);
            for (var y = r; y < p.th; y += p.dil) {
                let gv = aux[y * p.tw + lx];
                acc += gv * v;
                gsum += gv;
                at += step;
                v = vec4<f32>(v.yzw, window[at + 3u * step]);
            }
        }
    }
    workgroupBarrier();   // the gy tile in aux is spent
    put_tap_sums(lid, tl, acc, gsum);
}

// grad_w_strip's and grad_w_columns' end: each thread's 4 tap sums go to aux and its sum of
// gy to part; then the tw columns' totals of each tap (thread (group, lx) with group =
// quad·kw + kx holds taps ky = 4·quad + j of column kx) and of gy (the bias) are added in a
// fixed order and written as the tile's partial sums.
fn put_tap_sums(lid: u32, tl: Tile, acc: vec4<f32>, gsum: f32) {
    for (var j = 0u; j < 4u; j++) { aux[lid * 4u + j] = acc[j]; }
    part[lid] = gsum;
    workgroupBarrier();
    let kk = p.kh * p.kw;
    if lid < kk + p.has_bias && tl.plane0 < p.planes_total {
        var sum = 0.0;
        if lid < kk {
            let ky = lid / p.kw;
            let first = ((ky / 4u) * p.kw + lid % p.kw) * p.tw;
            for (var c = 0u; c < p.tw; c++) { sum += aux[(first + c) * 4u + ky % 4u]; }
        } else {
            // Group 0's threads (lid < tw) summed gy for their columns.
            for (var c = 0u; c < p.tw; c++) { sum += part[c]; }
        }
        let splits = (p.planes_total / p.c) * p.tiles;
        let split = (tl.plane0 / p.c) * p.tiles + tl.tile;
        let ch = tl.plane0 % p.c;
        let row = select(ch * kk + lid, p.bias_row + ch, lid == kk);
        partial[row * splits + split] = sum;
    }
}

// grad_w in columns straight from memory: the workgroup's tile is th rows of tw columns of
// one plane's gy; thread (group, lx), group = quad·kw + kx, sums gy[y, x]·x[y + (ky0 + j)·dil
// − pad, x + kx·dil − pad] over the tile's rows y in its column x = ox0 + lx for j < 4,
// ky0 = 4·quad, walking the rows dil apart so that each x value moves one tap up, as
// grad_w_strip does from its window; put_tap_sums writes the tile's partial sums.
@compute @workgroup_size(256)
fn grad_w_columns(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.workgroups { return; }
    let tl = tile_of(g);
    let lx = lid % p.tw;
    let grp = lid / p.tw;
    let ox = tl.ox0 + lx;
    var acc = vec4<f32>(0.0);
    var gsum = 0.0;
    if grp < p.kw * ((p.kh + 3u) / 4u) && ox < p.ow && tl.plane0 < p.planes_total {
        let kx = grp % p.kw;
        let ky0 = (grp / p.kw) * 4u;
        let d = i32(p.dil);
        let ix = i32(ox + kx * p.dil) - p.pad_x;
        // A column outside the source reads zeros (its taps' sums stay 0; gsum still counts).
        let inside = ix >= 0 && ix < i32(p.iw);
        let col = tl.plane0 * p.ih * p.iw + u32(select(0, ix, inside));
        let rows = min(p.th, p.oh - tl.oy0);
        let gcol = tl.plane0 * p.oh * p.ow + ox;
        for (var r = 0u; r < min(p.dil, rows); r++) {
            let y0 = i32(tl.oy0 + r + ky0 * p.dil) - p.pad_y;
            var v = vec4<f32>(0.0);
            if inside {
                v = vec4<f32>(src_at(col, y0), src_at(col, y0 + d), src_at(col, y0 + 2 * d),
                              src_at(col, y0 + 3 * d));
            }
            var iy = y0 + 4 * d;
            for (var y = tl.oy0 + r; y < tl.oy0 + rows; y += p.dil) {
                let gv = gy[gcol + y * p.ow];
                acc += gv * v;
                gsum += gv;
                v = vec4<f32>(v.yzw, select(0.0, src_at(col, iy), inside));
                iy += d;
            }
        }
    }
    put_tap_sums(lid, tl, acc, gsum);
}
