// 2-D convolution with PyTorch semantics: x [N, Cin, H, W], weights [Cout, Cin/groups, KH, KW],
// zero padding, stride, dilation and groups. Forward, grad_x and grad_w; grad_b comes out of
// the grad_w GEMM (dense layers) or is a plain per-channel sum (reduce.wgsl).
//
// Dense convolutions (groups == 1) run as implicit GEMMs (*_gemm): each workgroup computes a
// BM x BN output tile (at most 4096: 256 threads with a 4x4 register block each; narrow tiles
// leave threads idle in the multiply), stepping through K in slices of BK = 8 staged in
// workgroup memory; loads outside the image, the padding or the matrix read as zero, so every
// shape works.
//   forward: M = N·Ho·Wo output pixels, N = Cout, K = Cin·KH·KW (A = im2col(x), B = w^T)
//   grad_x:  one GEMM per stride phase: M = its input pixels, N = Cin, K = Cout times the taps
//            that reach the phase (A = gy gathered, B = w); every grad_x kernel can add the
//            gradient x already had from its other consumers in its store (accumulate)
//   grad_w:  M = Cout, N = Cin·KH·KW, K = N·Ho·Wo split in chunks of kc (split-K) into a
//            scratch [splits, Cout, Cin·KH·KW] summed by grad_w_reduce. With a bias, B gets
//            one more column of ones, so the bias gradient (the sum of gy over N·Ho·Wo)
//            comes out of the same GEMM as row ends [splits, Cout, Cin·KH·KW + 1].
// The other kernels are direct: grouped and depthwise convolutions, and grad_w of narrow dense
// layers (the direct grad_w kernels also split N·Ho·Wo into chunks for grad_w_reduce). Their
// tiled variants give each thread (forward, grad_x) or workgroup (grad_w) 4 channels of one
// group, so that every value loaded from x or gy is used 4 times; the plain ones (one element
// each) serve groups with fewer than 4 channels.

struct P {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, dil: u32,
    groups: u32, cin_g: u32, cout_g: u32, tiles: u32,   // tiles: channel tiles per group
    total: u32, has_bias: u32, bm: u32, bn: u32,        // total: threads (or workgroups) needed
    gm: u32, gn: u32, gk: u32, kc: u32,                 // GEMM sizes; kc: K per split (grad_w)
    splits: u32, ny: u32, nx: u32, fy: u32,             // grad_x_gemm's stride phase (see there)
    fx: u32, qy0: u32, qx0: u32, ky0: u32,              // qy0, qx0: i32 bits
    kx0: u32, nky: u32, nkx: u32, st: u32,
    dq: u32, accumulate: u32,                       // accumulate: grad_x adds gx_in
    wtasks: u32, bias_off: u32,                     // direct grad_w: see grad_w
}

@group(0) @binding(0) var<uniform> p: P;

// Forward: y = conv(x, wt) + bias (bias is bound to wt and ignored when has_bias == 0).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// grad_x: gx = conv_transpose(gy, wt), plus gx_in with accumulate == 1 (the gradient that
// the input's other consumers gave it, summed here instead of by one more pass; gx_in is
// bound to wt otherwise).
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read> gx_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;

// grad_w: gw = correlation of gy with x (gy at binding 1, x at binding 2).
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(3) var<storage, read_write> gw: array<f32>;

var<workgroup> part: array<f32, 256>;
var<workgroup> part4: array<vec4<f32>, 256>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Thread i of a kernel over (n, group, channel tile, row, col) of a rows x cols plane.
struct Slot { n: u32, g: u32, c0: u32, row: u32, col: u32 }

fn slot(i: u32, rows: u32, cols: u32, per_group: u32, tile: u32) -> Slot {
    let col = i % cols;
    var r = i / cols;
    let row = r % rows;
    r = r / rows;
    let t = r % (p.groups * p.tiles);
    let g = t / p.tiles;
    return Slot(r / (p.groups * p.tiles), g, g * per_group + (t % p.tiles) * tile, row, col);
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.ho, p.wo, p.cout_g, 4u);
    let end = (s.g + 1u) * p.cout_g;
    // Channels past the group's end read the last one (in bounds); their sums are dropped.
    let co = min(vec4<u32>(s.c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(end - 1u));
    let wb = co * (p.cin_g * p.kh * p.kw);
    let iy0 = i32(s.row * p.stride) - i32(p.pad);
    let ix0 = i32(s.col * p.stride) - i32(p.pad);
    var acc = vec4<f32>(0.0);
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xc = (s.n * p.cin + s.g * p.cin_g + ci) * p.h;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky * p.dil);
            if iy < 0 || iy >= i32(p.h) { continue; }
            let xr = (xc + u32(iy)) * p.w;
            let wr = (ci * p.kh + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx * p.dil);
                if ix < 0 || ix >= i32(p.w) { continue; }
                let o = wr + kx;
                let wv = vec4<f32>(wt[wb.x + o], wt[wb.y + o], wt[wb.z + o], wt[wb.w + o]);
                acc += x[xr + u32(ix)] * wv;
            }
        }
    }
    if p.has_bias == 1u {
        acc += vec4<f32>(bias[co.x], bias[co.y], bias[co.z], bias[co.w]);
    }
    let plane = p.ho * p.wo;
    let yb = s.n * p.cout * plane + s.row * p.wo + s.col;
    // Indexed as a value: a dynamic index into the variable would keep it in memory on
    // some drivers (local memory on NVIDIA's) for the whole tap loop.
    let sums = acc;
    for (var j = 0u; j < 4u; j++) {
        if s.c0 + j < end { y[yb + (s.c0 + j) * plane] = sums[j]; }
    }
}

@compute @workgroup_size(256)
fn forward_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.ho, p.wo, p.cout_g, 1u);
    let wb = s.c0 * p.cin_g * p.kh * p.kw;
    let iy0 = i32(s.row * p.stride) - i32(p.pad);
    let ix0 = i32(s.col * p.stride) - i32(p.pad);
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xc = (s.n * p.cin + s.g * p.cin_g + ci) * p.h;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky * p.dil);
            if iy < 0 || iy >= i32(p.h) { continue; }
            let xr = (xc + u32(iy)) * p.w;
            let wr = wb + (ci * p.kh + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx * p.dil);
                if ix < 0 || ix >= i32(p.w) { continue; }
                acc += x[xr + u32(ix)] * wt[wr + kx];
            }
        }
    }
    if p.has_bias == 1u { acc += bias[s.c0]; }
    y[((s.n * p.cout + s.c0) * p.ho + s.row) * p.wo + s.col] = acc;
}

// The output index along one axis that kernel tap k reaches from input index i, or -1 when
// the tap falls between strided outputs or outside the output.
fn put_gx(i: u32, v: f32) {
    if p.accumulate == 1u {
        gx[i] = v + gx_in[i];
    } else {
        gx[i] = v;
    }
}

fn tap_out(i: u32, k: u32, out: u32) -> i32 {
    let t = i32(i + p.pad) - i32(k * p.dil);
    // Stride 1 (all depthwise layers of the model) needs no integer division.
    if p.stride == 1u { return select(-1, t, t >= 0 && t < i32(out)); }
    if t < 0 || t % i32(p.stride) != 0 { return -1; }
    let o = t / i32(p.stride);
    return select(-1, o, o < i32(out));
}

@compute @workgroup_size(256)
fn grad_x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.h, p.w, p.cin_g, 4u);
    let end = (s.g + 1u) * p.cin_g;
    let kk = p.kh * p.kw;
    // In-group input channels of the tile, clamped like the forward's output channels.
    let cl = min(vec4<u32>(s.c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(end - 1u)) - s.g * p.cin_g;
    let wl = cl * kk;
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let oy = tap_out(s.row, ky, p.ho);
        if oy < 0 { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ox = tap_out(s.col, kx, p.wo);
            if ox < 0 { continue; }
            let tap = ky * p.kw + kx;
            for (var c = 0u; c < p.cout_g; c++) {
                let co = s.g * p.cout_g + c;
                let g = gy[((s.n * p.cout + co) * p.ho + u32(oy)) * p.wo + u32(ox)];
                let wb = co * p.cin_g * kk + tap;
                acc += g * vec4<f32>(wt[wb + wl.x], wt[wb + wl.y], wt[wb + wl.z], wt[wb + wl.w]);
            }
        }
    }
    let plane = p.h * p.w;
    let xb = s.n * p.cin * plane + s.row * p.w + s.col;
    let sums = acc;   // indexed as a value (see forward)
    for (var j = 0u; j < 4u; j++) {
        if s.c0 + j < end { put_gx(xb + (s.c0 + j) * plane, sums[j]); }
    }
}

@compute @workgroup_size(256)
fn grad_x_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.h, p.w, p.cin_g, 1u);
    let kk = p.kh * p.kw;
    let cl = s.c0 - s.g * p.cin_g;
    let plane = p.ho * p.wo;
    // gy and w of the group's first output channel; further channels are plane and
    // Cin/groups·KH·KW further on.
    let gb = (s.n * p.cout + s.g * p.cout_g) * plane;
    let wb = (s.g * p.cout_g * p.cin_g + cl) * kk;
    let wstep = p.cin_g * kk;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let oy = tap_out(s.row, ky, p.ho);
        if oy < 0 { continue; }
        let gr = gb + u32(oy) * p.wo;
        for (var kx = 0u; kx < p.kw; kx++) {
            let ox = tap_out(s.col, kx, p.wo);
            if ox < 0 { continue; }
            let wt0 = wb + ky * p.kw + kx;
            acc += gy[gr + u32(ox)] * wt[wt0];
            for (var c = 1u; c < p.cout_g; c++) {
                acc += gy[gr + c * plane + u32(ox)] * wt[wt0 + c * wstep];
            }
        }
    }
    put_gx(((s.n * p.cin + s.c0) * p.h + s.row) * p.w + s.col, acc);
}

// Output pixel q of N·Ho·Wo as (ox, oy, n), and the pixel 256 further on without integer
// division (256 = a·Wo + b, a = c·Ho + d: each carry happens at most once).
fn pixel(q: u32) -> vec3<u32> {
    return vec3<u32>(q % p.wo, (q / p.wo) % p.ho, q / (p.wo * p.ho));
}

fn pixel_stride() -> vec3<u32> {
    let a = 256u / p.wo;
    return vec3<u32>(256u % p.wo, a % p.ho, a / p.ho);
}

fn pixel_step(o: vec3<u32>, st: vec3<u32>) -> vec3<u32> {
    var ox = o.x + st.x;
    var oy = o.y + st.y;
    var n = o.z + st.z;
    if ox >= p.wo {
        ox -= p.wo;
        oy += 1u;
    }
    if oy >= p.ho {
        oy -= p.ho;
        n += 1u;
    }
    return vec3<u32>(ox, oy, n);
}

// The direct grad_w kernels' output per split: gw, then with a bias gb from p.bias_off on.
fn slab() -> u32 {
    return select(p.cout * p.cin_g * p.kh * p.kw, p.bias_off + p.cout, p.has_bias == 1u);
}

// A direct grad_w task: the tap (cl, ky, kx) and, in `rest`, the output channel (tile) it is
// for; tasks from p.wtasks on are bias tasks (no tap; `rest` counts from p.wtasks).
struct WTask { bias: bool, rest: u32, cl: u32, ky: u32, kx: u32 }

// A direct grad_w workgroup's job: its task, its split of N·Ho·Wo (valid: not past the
// last), this thread's first pixel q0 and the split's end q1, and where its split's output
// starts.
struct WJob { task: WTask, valid: bool, q0: u32, q1: u32, out: u32 }

fn w_job(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> WJob {
    let e = wid.x + wid.y * nwg.x;
    let split = e / p.total;
    let we = e % p.total;
    var task = WTask(true, we - p.wtasks, 0u, 0u, 0u);
    if we < p.wtasks {
        let r = we / (p.kw * p.kh);
        task = WTask(false, r / p.cin_g, r % p.cin_g, (we / p.kw) % p.kh, we % p.kw);
    }
    let q1 = min((split + 1u) * p.kc, p.n * p.ho * p.wo);
    return WJob(task, split < p.splits, split * p.kc + lid, q1, split * slab());
}

// One workgroup per 4 output channels of one group at one (ci, ky, kx) and one chunk of kc
// values of N·Ho·Wo (split s of p.splits): a reduction in which each x value loaded meets 4
// output gradients. With a bias, the tasks past the p.wtasks weight tasks sum gy alone for
// their 4 channels (gb). With several splits gw is a scratch [splits, slab()] for
// grad_w_reduce.
@compute @workgroup_size(256)
fn grad_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = w_job(wid, nwg, lid);
    let tk = j.task;
    let g = tk.rest / p.tiles;
    let c0 = g * p.cout_g + (tk.rest % p.tiles) * 4u;
    let end = (g + 1u) * p.cout_g;
    let plane = p.ho * p.wo;
    let co = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(end - 1u)) * plane;
    let ci = g * p.cin_g + tk.cl;
    let dy = i32(tk.ky * p.dil) - i32(p.pad);
    let dx = i32(tk.kx * p.dil) - i32(p.pad);
    var sum = vec4<f32>(0.0);
    var o = pixel(j.q0);
    let st = pixel_stride();
    for (var q = j.q0; q < j.q1; q += 256u) {
        let ox = o.x;
        let oy = o.y;
        let n = o.z;
        o = pixel_step(o, st);
        let gb = n * p.cout * plane + oy * p.wo + ox;
        let iy = i32(oy * p.stride) + dy;
        let ix = i32(ox * p.stride) + dx;
        if tk.bias {
            sum += vec4<f32>(gy[gb + co.x], gy[gb + co.y], gy[gb + co.z], gy[gb + co.w]);
        } else if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
            let g4 = vec4<f32>(gy[gb + co.x], gy[gb + co.y], gy[gb + co.z], gy[gb + co.w]);
            sum += g4 * xin[((n * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    part4[lid] = sum;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { part4[lid] += part4[lid + w]; }
        workgroupBarrier();
    }
    if lid == 0u && j.valid {
        let tap = tk.ky * p.kw + tk.kx;
        for (var i = 0u; i < 4u; i++) {
            if c0 + i < end {
                let w_at = ((c0 + i) * p.cin_g + tk.cl) * p.kh * p.kw + tap;
                gw[j.out + select(w_at, p.bias_off + c0 + i, tk.bias)] = part4[0][i];
            }
        }
    }
}

// One workgroup per weight element [co, ci, tk.ky, tk.kx] (then, with a bias, one per output
// channel summing gy alone) and chunk of N·Ho·Wo, as grad_w.
@compute @workgroup_size(256)
fn grad_w_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = w_job(wid, nwg, lid);
    let tk = j.task;
    let co = tk.rest;
    let ci = (co / p.cout_g) * p.cin_g + tk.cl;
    let dy = i32(tk.ky * p.dil) - i32(p.pad);
    let dx = i32(tk.kx * p.dil) - i32(p.pad);
    let plane = p.ho * p.wo;
    var sum = 0.0;
    var o = pixel(j.q0);
    let st = pixel_stride();
    for (var q = j.q0; q < j.q1; q += 256u) {
        let ox = o.x;
        let oy = o.y;
        let n = o.z;
        o = pixel_step(o, st);
        let g = gy[(n * p.cout + co) * plane + oy * p.wo + ox];
        let iy = i32(oy * p.stride) + dy;
        let ix = i32(ox * p.stride) + dx;
        if tk.bias {
            sum += g;
        } else if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
            sum += g * xin[((n * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    part[lid] = sum;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    if lid == 0u && j.valid {
        let w_at = ((co * p.cin_g + tk.cl) * p.kh + tk.ky) * p.kw + tk.kx;
        gw[j.out + select(w_at, p.bias_off + co, tk.bias)] = part[0];
    }
}

// ---- Implicit-GEMM kernels for dense convolutions ----

// grad_w_gemm's partial sums [splits, Cout, Cin·KH·KW (+ 1 with a bias)] (binding 3) and
// their reduction into gw (and gb).
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(1) var<storage, read> partial_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> gw_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> gb_out: array<f32>;   // bound to gw_out without bias

const BK: u32 = 8u;
// Marks a row or column that must read zero: pushes the image coordinate far out of range.
const FAR: i32 = -536870912;

// A: BK rows of BM values (as BM/4 vec4s), then B: BK rows of BN values. BM + BN <= 272.
var<workgroup> tile: array<vec4<f32>, 544>;
// Per-k gather offsets of two consecutive K slices (double-buffered: the next slice's entries
// are written while the current one is multiplied).
var<workgroup> ktab: array<vec4<i32>, 16>;
// grad_w: per-column (ci, ky, kx) offsets of the B tile.
var<workgroup> ctab: array<vec4<i32>, 256>;

var<private> c0: vec4<f32>;
var<private> c1: vec4<f32>;
var<private> c2: vec4<f32>;
var<private> c3: vec4<f32>;

// Accumulates the staged slice: rows 4·tm.. 4·tm+3 (c0..c3) by columns 4·tn.. 4·tn+3.
fn mac(bm4: u32, bn4: u32, tm: u32, tn: u32) {
    let boff = BK * bm4;
    for (var k = 0u; k < BK; k++) {
        let a = tile[k * bm4 + tm];
        let b = tile[boff + k * bn4 + tn];
        c0 += a.x * b;
        c1 += a.y * b;
        c2 += a.z * b;
        c3 += a.w * b;
    }
}

fn acc_row(i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return c0; }
        case 1u: { return c1; }
        case 2u: { return c2; }
        default: { return c3; }
    }
}

fn put_a(r: u32, m: u32, bm4: u32, v: f32) {
    tile[r * bm4 + m / 4u][m % 4u] = v;
}

fn put_b(r: u32, n: u32, bm4: u32, bn4: u32, v: f32) {
    tile[BK * bm4 + r * bn4 + n / 4u][n % 4u] = v;
}

// 0 <= iy < H and 0 <= ix < W (negative values wrap to huge unsigned ones).
fn in_image(iy: i32, ix: i32) -> bool {
    return u32(iy) < p.h && u32(ix) < p.w;
}

// forward: k = (ci, ky, kx) -> (x offset of the tap from the pixel's window corner, ky·dil,
// kx·dil); FAR past K.
fn fwd_k(k: u32) -> vec4<i32> {
    if k >= p.gk { return vec4<i32>(0, FAR, FAR, 0); }
    let khw = p.kh * p.kw;
    let tap = k % khw;
    let dy = (tap / p.kw) * p.dil;
    let dx = (tap % p.kw) * p.dil;
    return vec4<i32>(i32((k / khw) * p.h * p.w + dy * p.w + dx), i32(dy), i32(dx), 0);
}

@compute @workgroup_size(256)
fn forward_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = wid.x + wid.y * nwg.x;
    if e >= p.total { return; }
    let bm4 = p.bm / 4u;
    let bn4 = p.bn / 4u;
    let ntn = (p.gn + p.bn - 1u) / p.bn;
    let m0 = (e / ntn) * p.bm;
    let n0 = (e % ntn) * p.bn;
    let plane = p.ho * p.wo;
    // This thread's A column (output pixel) for the loads.
    let ml = lid % p.bm;
    let m = min(m0 + ml, p.gm - 1u);
    let pix = m % plane;
    let iy0 = i32((pix / p.wo) * p.stride) - i32(p.pad);
    let ix0 = i32((pix % p.wo) * p.stride) - i32(p.pad);
    let xb = i32((m / plane) * p.cin * p.h * p.w) + iy0 * i32(p.w) + ix0;
    let iyc = select(FAR, iy0, m0 + ml < p.gm);
    let rstep = 256u / p.bm;
    // Output pixels are contiguous in y: neighbouring threads take neighbouring rows.
    let tm = lid % bm4;
    let tn = lid / bm4;
    let busy = tn < bn4;  // BN < 16 (fewer than 16 channels): only BN / 4 · 64 threads multiply
    c0 = vec4<f32>(0.0);
    c1 = vec4<f32>(0.0);
    c2 = vec4<f32>(0.0);
    c3 = vec4<f32>(0.0);
    if lid < BK { ktab[lid] = fwd_k(lid); }
    workgroupBarrier();
    let steps = (p.gk + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        let cur = (s & 1u) * BK;
        let k0 = s * BK;
        for (var r = lid / p.bm; r < BK; r += rstep) {
            let t = ktab[cur + r];
            var v = 0.0;
            if in_image(iyc + t.y, ix0 + t.z) { v = x[u32(xb + t.x)]; }
            put_a(r, ml, bm4, v);
        }
        for (var i = lid; i < BK * p.bn; i += 256u) {
            let r = i % BK;
            let nl = i / BK;
            var v = 0.0;
            if k0 + r < p.gk && n0 + nl < p.gn { v = wt[(n0 + nl) * p.gk + k0 + r]; }
            put_b(r, nl, bm4, bn4, v);
        }
        workgroupBarrier();
        if lid < BK { ktab[(cur ^ BK) + lid] = fwd_k(k0 + BK + lid); }
        if busy { mac(bm4, bn4, tm, tn); }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let mo = m0 + tm * 4u + i;
        if !busy || mo >= p.gm { break; }
        let acc = acc_row(i);
        let yb = (mo / plane) * p.cout * plane + mo % plane;
        for (var j = 0u; j < 4u; j++) {
            let co = n0 + tn * 4u + j;
            if co < p.gn {
                var v = acc[j];
                if p.has_bias == 1u { v += bias[co]; }
                y[yb + co * plane] = v;
            }
        }
    }
}

// grad_x runs once per stride phase (fy, fx): the input pixels iy = fy + s·i, ix = fx + s·j
// (ny × nx of them per image). Only taps ky = ky0 + st·a (nky of them; likewise kx) reach
// such a pixel, from output row oy = qy0 + i − dq·a, so K = Cout·nky·nkx holds no zero taps.
// k = (co, a, b) -> (gy offset from the pixel's (oy, ox) at a = b = 0, dq·a, dq·b, w offset
// of (co, 0, ky, kx)).
fn gx_k(k: u32) -> vec4<i32> {
    if k >= p.gk { return vec4<i32>(0, -FAR, -FAR, -1); }
    let taps = p.nky * p.nkx;
    let co = k / taps;
    let t = k % taps;
    let dy = i32((t / p.nkx) * p.dq);
    let dx = i32((t % p.nkx) * p.dq);
    let ky = p.ky0 + (t / p.nkx) * p.st;
    let kx = p.kx0 + (t % p.nkx) * p.st;
    return vec4<i32>(i32(co * p.ho * p.wo) - dy * i32(p.wo) - dx, dy, dx,
                     i32(co * p.cin * p.kh * p.kw + ky * p.kw + kx));
}

@compute @workgroup_size(256)
fn grad_x_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = wid.x + wid.y * nwg.x;
    if e >= p.total { return; }
    let bm4 = p.bm / 4u;
    let bn4 = p.bn / 4u;
    let ntn = (p.gn + p.bn - 1u) / p.bn;
    let m0 = (e / ntn) * p.bm;
    let n0 = (e % ntn) * p.bn;
    let plane = p.ny * p.nx;
    let khw = p.kh * p.kw;
    // This thread's A column (input pixel of the phase): its output row/column at tap 0.
    let ml = lid % p.bm;
    let m = min(m0 + ml, p.gm - 1u);
    let q = m % plane;
    let qy = bitcast<i32>(p.qy0) + i32(q / p.nx);
    let qx = bitcast<i32>(p.qx0) + i32(q % p.nx);
    let gyb = i32((m / plane) * p.cout * p.ho * p.wo) + qy * i32(p.wo) + qx;
    let qyc = select(FAR, qy, m0 + ml < p.gm);
    let rstep = 256u / p.bm;
    // B column (input channel) of this thread's loads.
    let nl = lid % p.bn;
    let bstep = 256u / p.bn;
    let ci = n0 + nl;
    let tm = lid % bm4;
    let tn = lid / bm4;
    let busy = tn < bn4;  // BN < 16 (fewer than 16 channels): only BN / 4 · 64 threads multiply
    c0 = vec4<f32>(0.0);
    c1 = vec4<f32>(0.0);
    c2 = vec4<f32>(0.0);
    c3 = vec4<f32>(0.0);
    if lid < BK { ktab[lid] = gx_k(lid); }
    workgroupBarrier();
    let steps = (p.gk + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        let cur = (s & 1u) * BK;
        for (var r = lid / p.bm; r < BK; r += rstep) {
            let t = ktab[cur + r];
            var v = 0.0;
            if u32(qyc - t.y) < p.ho && u32(qx - t.z) < p.wo { v = gy[u32(gyb + t.x)]; }
            put_a(r, ml, bm4, v);
        }
        for (var r = lid / p.bn; r < BK; r += bstep) {
            let t = ktab[cur + r];
            var v = 0.0;
            if t.w >= 0 && ci < p.gn { v = wt[u32(t.w) + ci * khw]; }
            put_b(r, nl, bm4, bn4, v);
        }
        workgroupBarrier();
        if lid < BK { ktab[(cur ^ BK) + lid] = gx_k((s + 1u) * BK + lid); }
        if busy { mac(bm4, bn4, tm, tn); }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let mo = m0 + tm * 4u + i;
        if !busy || mo >= p.gm { break; }
        let acc = acc_row(i);
        let qo = mo % plane;
        let pix = (p.fy + (qo / p.nx) * p.stride) * p.w + p.fx + (qo % p.nx) * p.stride;
        let xb = (mo / plane) * p.cin * p.h * p.w + pix;
        for (var j = 0u; j < 4u; j++) {
            let c = n0 + tn * 4u + j;
            if c < p.gn { put_gx(xb + c * p.h * p.w, acc[j]); }
        }
    }
}

// grad_w: k = (n, oy, ox) -> (gy offset of (n, 0, oy, ox) or -1 past the chunk, x offset of
// the window corner (n, 0, iy0, ix0), iy0 = oy·stride − pad, ix0 = ox·stride − pad).
fn gw_k(k: u32, kend: u32) -> vec4<i32> {
    if k >= kend { return vec4<i32>(-1, 0, FAR, FAR); }
    let plane = p.ho * p.wo;
    let img = k / plane;
    let pix = k % plane;
    let iy0 = i32((pix / p.wo) * p.stride) - i32(p.pad);
    let ix0 = i32((pix % p.wo) * p.stride) - i32(p.pad);
    let xoff = i32(img * p.cin * p.h * p.w) + iy0 * i32(p.w) + ix0;
    return vec4<i32>(i32(img * p.cout * plane + pix), xoff, iy0, ix0);
}

@compute @workgroup_size(256)
fn grad_w_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = wid.x + wid.y * nwg.x;
    if e >= p.total { return; }
    let bm4 = p.bm / 4u;
    let bn4 = p.bn / 4u;
    // With a bias, B has one more column of ones: its sums are the bias gradient.
    let gnb = p.gn + p.has_bias;
    let ntn = (gnb + p.bn - 1u) / p.bn;
    let ntiles = ((p.gm + p.bm - 1u) / p.bm) * ntn;
    let split = e / ntiles;
    let m0 = ((e % ntiles) / ntn) * p.bm;
    let n0 = (e % ntn) * p.bn;
    let kbeg = split * p.kc;
    let kend = min(kbeg + p.kc, p.gk);
    let khw = p.kh * p.kw;
    let plane = p.ho * p.wo;
    for (var i = lid; i < p.bn; i += 256u) {
        let j = n0 + i;
        let tap = j % khw;
        let dy = (tap / p.kw) * p.dil;
        let dx = (tap % p.kw) * p.dil;
        let off = (j / khw) * p.h * p.w + dy * p.w + dx;
        ctab[i] = vec4<i32>(i32(off), select(FAR, i32(dy), j < p.gn), i32(dx),
                            i32(j == p.gn && p.has_bias == 1u));
    }
    // Weights are contiguous along N: neighbouring threads take neighbouring columns. BN fits
    // Cin·KH·KW (any multiple of 4), so only BM·BN / 16 threads multiply; all of them load.
    let tn = lid % bn4;
    let tm = lid / bn4;
    let busy = tm < bm4;
    c0 = vec4<f32>(0.0);
    c1 = vec4<f32>(0.0);
    c2 = vec4<f32>(0.0);
    c3 = vec4<f32>(0.0);
    if lid < BK { ktab[lid] = gw_k(kbeg + lid, kend); }
    workgroupBarrier();
    let steps = (kend - kbeg + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        let cur = (s & 1u) * BK;
        // Neighbouring threads take neighbouring k (pixels) for contiguous loads; each thread
        // keeps one k (row r) and steps through the columns.
        let r = lid % BK;
        let t = ktab[cur + r];
        for (var ml = lid / BK; ml < p.bm; ml += 256u / BK) {
            var v = 0.0;
            if t.x >= 0 && m0 + ml < p.gm { v = gy[u32(t.x) + (m0 + ml) * plane]; }
            put_a(r, ml, bm4, v);
        }
        for (var nl = lid / BK; nl < p.bn; nl += 256u / BK) {
            let c = ctab[nl];
            var v = 0.0;
            if c.w == 1 {
                if t.x >= 0 { v = 1.0; }
            } else if in_image(t.z + c.y, t.w + c.z) {
                v = xin[u32(t.y + c.x)];
            }
            put_b(r, nl, bm4, bn4, v);
        }
        workgroupBarrier();
        if lid < BK { ktab[(cur ^ BK) + lid] = gw_k(kbeg + (s + 1u) * BK + lid, kend); }
        if busy { mac(bm4, bn4, tm, tn); }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + tm * 4u + i;
        if !busy || co >= p.gm { break; }
        let acc = acc_row(i);
        let pb = (split * p.gm + co) * gnb;
        for (var j = 0u; j < 4u; j++) {
            let c = n0 + tn * 4u + j;
            if c < gnb { partial[pb + c] = acc[j]; }
        }
    }
}

// gw = the sum over splits of grad_w_gemm's partial sums, in a fixed order (deterministic).
// Each workgroup sums 16 outputs, 16 threads per output each taking every 16th split, so that
// no thread walks a long chain of dependent loads. With a bias, each row of gn + 1 sums ends
// with the bias gradient, which goes to gb.
@compute @workgroup_size(256)
fn grad_w_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 16u + lid % 16u;
    var sum = 0.0;
    if i < p.total {
        for (var s = lid / 16u; s < p.splits; s += 16u) {
            sum += partial_in[s * p.total + i];
        }
    }
    part[lid] = sum;
    workgroupBarrier();
    for (var w = 128u; w >= 16u; w >>= 1u) {
        if lid < w { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    if lid < 16u && i < p.total {
        put_reduced(i, part[lid]);
    }
}

// Stores sum i of grad_w_reduce: with a bias, each row of gn + 1 sums ends with the bias
// gradient, which goes to gb.
fn put_reduced(i: u32, v: f32) {
    if p.has_bias == 0u {
        gw_out[i] = v;
    } else if i % (p.gn + 1u) < p.gn {
        gw_out[i - i / (p.gn + 1u)] = v;
    } else {
        gb_out[i / (p.gn + 1u)] = v;
    }
}

// grad_w_reduce for a CPU driver, which runs a workgroup on one thread: one thread per output
// walks the few splits there in order, with no workgroup memory and no barrier (lavapipe
// pays for each barrier; grad_w_reduce's five cost it 10-20 ms per call on 2 cores).
@compute @workgroup_size(64)
fn grad_w_reduce_flat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.total { return; }
    var sum = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        sum += partial_in[s * p.total + i];
    }
    put_reduced(i, sum);
}
