// Dense stride-1 convolutions with small kernels (3×3 and 1×1: (K−1)·dil + 1 <= 3), as
// windowed direct kernels. Each workgroup computes a TH × TW tile of output pixels of one
// image for CO output channels: it stages the tile's source window of CI channels at a time
// in workgroup memory (zero padding written in) with their weights, and each thread keeps the
// CO sums of two pixels, rows ty and ty + TH/2 of one column (each weight read from
// workgroup memory serves both). A source value is loaded from global memory once per tile,
// not once per tap as in the implicit GEMM's im2col gather, and the taps need no bounds
// checks.
//   forward: src = x [N, Cin, H, W], dst = y, weights w[co][ci][tap], row offset pad;
//   grad_x:  src = gy [N, Cout, Ho, Wo], dst = gx, weights w[ci][co][K−1−tap] (the flipped,
//            transposed kernel), row offset (K−1)·dil − pad; with accumulate, plus the
//            gradient gx already had from x's other consumers.
//   grad_w (3×3, dilation 1): a workgroup walks a chunk of (image, 8×16 tile) pairs for 16
//            output and 4 input channels, staging each tile's gy and x window; each thread
//            sums gy·x for one (output channel quad, input channel) and all 9 taps over
//            every 16th pixel, the 16 slices are summed in workgroup memory, and the chunks'
//            partial sums [chunks, Cout, Cin, 3, 3] are summed by reduce.wgsl.

const TH: u32 = 16u;
const TW: u32 = 32u;
const CI: u32 = 4u;
const CO: u32 = 16u;

struct P {
    n: u32,
    cin: u32,       // source channels
    h: u32,         // source plane
    w: u32,
    cout: u32,      // destination channels
    oh: u32,        // destination plane
    ow: u32,
    kh: u32,
    kw: u32,
    dil: u32,
    pad_y: i32,     // source row of tile row 0 and tap 0 = tile's first row − pad_y
    pad_x: i32,
    tiles_x: u32,
    tiles: u32,     // tiles per plane
    cgroups: u32,   // groups of CO destination channels
    workgroups: u32,
    flip: u32,      // grad_x: read the weights transposed and flipped
    has_bias: u32,
    wcin: u32,      // the weight tensor's second dimension (Cin of the forward)
    cigroups: u32,  // grad_w: groups of CI input channels
    chunk: u32,     // grad_w: (image, tile) pairs per workgroup
    accumulate: u32,  // grad_x: add gx_in (the gradient from the input's other consumers)
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
// bias: the forward's bias, or grad_x's gx_in; bound to wt when neither is used.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// grad_w: x at binding 1 (src), gy, then the chunks' partial sums.
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

// CI channels of (TH + 2) × (TW + 2) values at most.
var<workgroup> win: array<f32, 2448>;
// [ci][tap][co / 4]: the weights of the staged channels, 4 output channels per vec4.
var<workgroup> wts: array<vec4<f32>, 144>;

@compute @workgroup_size(256)
fn conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.workgroups { return; }
    let t = g % p.tiles;
    let cg = (g / p.tiles) % p.cgroups;
    let n = g / (p.tiles * p.cgroups);
    let oy0 = (t / p.tiles_x) * TH;
    let ox0 = (t % p.tiles_x) * TW;
    let ty = lid / TW;
    let tx = lid % TW;
    let ah = TH + (p.kh - 1u) * p.dil;
    let aw = TW + (p.kw - 1u) * p.dil;
    let area = ah * aw;
    let kk = p.kh * p.kw;
    // Output channels 4q..4q+3 of the upper pixel (a) and of the lower one (b).
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    let lower = (TH / 2u) * aw;
    for (var c0 = 0u; c0 < p.cin; c0 += CI) {
        for (var i = lid; i < CI * area; i += 256u) {
            let c = c0 + i / area;
            let r = i % area;
            let iy = i32(oy0 + r / aw) - p.pad_y;
            let ix = i32(ox0 + r % aw) - p.pad_x;
            var v = 0.0;
            if c < p.cin && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                v = src[((n * p.cin + c) * p.h + u32(iy)) * p.w + u32(ix)];
            }
            win[i] = v;
        }
        for (var i = lid; i < CI * kk * CO; i += 256u) {
            let col = i % CO;
            let tap = (i / CO) % kk;
            let ci = i / (CO * kk);
            let co = cg * CO + col;
            let c = c0 + ci;
            var v = 0.0;
            if co < p.cout && c < p.cin {
                if p.flip == 0u {
                    v = wt[(co * p.wcin + c) * kk + tap];
                } else {
                    v = wt[(c * p.wcin + co) * kk + kk - 1u - tap];
                }
            }
            wts[(ci * kk + tap) * 4u + col / 4u][col % 4u] = v;
        }
        workgroupBarrier();
        for (var ci = 0u; ci < CI; ci++) {
            for (var ky = 0u; ky < p.kh; ky++) {
                let row = ci * area + (ty + ky * p.dil) * aw + tx;
                for (var kx = 0u; kx < p.kw; kx++) {
                    let xa = win[row + kx * p.dil];
                    let xb = win[row + lower + kx * p.dil];
                    let wb = (ci * kk + ky * p.kw + kx) * 4u;
                    let w0 = wts[wb];
                    let w1 = wts[wb + 1u];
                    let w2 = wts[wb + 2u];
                    let w3 = wts[wb + 3u];
                    a0 += xa * w0;
                    a1 += xa * w1;
                    a2 += xa * w2;
                    a3 += xa * w3;
                    b0 += xb * w0;
                    b1 += xb * w1;
                    b2 += xb * w2;
                    b3 += xb * w3;
                }
            }
        }
        workgroupBarrier();
    }
    let ox = ox0 + tx;
    for (var half = 0u; half < 2u; half++) {
        let oy = oy0 + ty + half * (TH / 2u);
        if oy >= p.oh || ox >= p.ow { return; }
        for (var j = 0u; j < CO; j++) {
            let co = cg * CO + j;
            if co >= p.cout { break; }
            var v: f32;
            switch j / 4u + 4u * half {
                case 0u: { v = a0[j % 4u]; }
                case 1u: { v = a1[j % 4u]; }
                case 2u: { v = a2[j % 4u]; }
                case 3u: { v = a3[j % 4u]; }
                case 4u: { v = b0[j % 4u]; }
                case 5u: { v = b1[j % 4u]; }
                case 6u: { v = b2[j % 4u]; }
                default: { v = b3[j % 4u]; }
            }
            let at_dst = ((n * p.cout + co) * p.oh + oy) * p.ow + ox;
            if p.has_bias == 1u { v += bias[co]; }
            if p.accumulate == 1u { v += bias[at_dst]; }
            dst[at_dst] = v;
        }
    }
}

const GH: u32 = 8u;
const GWD: u32 = 16u;

// grad_w's staged tile: gy as [pixel][output channel quad] and the x window of CI channels.
var<workgroup> gyt: array<vec4<f32>, 512>;
var<workgroup> xw: array<f32, 720>;
var<workgroup> red: array<vec4<f32>, 256>;

// Sums tap t's vec4 (output channels co0 + 4·quad.., input channel c0 + ci) over the 16
// pixel slices (lid = slice·16 + ci·4 + quad) and writes it to the chunk's partial sums.
fn reduce_tap(lid: u32, t: u32, v: vec4<f32>, co0: u32, c0: u32, chunk_base: u32) {
    red[lid] = v;
    workgroupBarrier();
    if lid < 16u {
        var sum = vec4<f32>(0.0);
        for (var sl = 0u; sl < 16u; sl++) { sum += red[sl * 16u + lid]; }
        let c = c0 + lid / 4u;
        for (var j = 0u; j < 4u; j++) {
            let co = co0 + (lid % 4u) * 4u + j;
            if co < p.cout && c < p.cin {
                partial[chunk_base + (co * p.cin + c) * 9u + t] = sum[j];
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn grad_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.workgroups { return; }
    let cg = g % p.cgroups;
    let cig = (g / p.cgroups) % p.cigroups;
    let chunk = g / (p.cgroups * p.cigroups);
    let q = lid % 4u;
    let ci = (lid / 4u) % 4u;
    let slice = lid / 16u;
    let aw = GWD + 2u;
    let area = (GH + 2u) * aw;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    let pairs = p.n * p.tiles;
    let end = min((chunk + 1u) * p.chunk, pairs);
    for (var pi = chunk * p.chunk; pi < end; pi++) {
        let img = pi / p.tiles;
        let t = pi % p.tiles;
        let oy0 = (t / p.tiles_x) * GH;
        let ox0 = (t % p.tiles_x) * GWD;
        for (var i = lid; i < CO * GH * GWD; i += 256u) {
            let col = i / (GH * GWD);
            let px = i % (GH * GWD);
            let co = cg * CO + col;
            let oy = oy0 + px / GWD;
            let ox = ox0 + px % GWD;
            var v = 0.0;
            if co < p.cout && oy < p.oh && ox < p.ow {
                v = gy[((img * p.cout + co) * p.oh + oy) * p.ow + ox];
            }
            gyt[px * 4u + col / 4u][col % 4u] = v;
        }
        for (var i = lid; i < CI * area; i += 256u) {
            let c = cig * CI + i / area;
            let r = i % area;
            let iy = i32(oy0 + r / aw) - p.pad_y;
            let ix = i32(ox0 + r % aw) - p.pad_x;
            var v = 0.0;
            if c < p.cin && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                v = src[((img * p.cin + c) * p.h + u32(iy)) * p.w + u32(ix)];
            }
            xw[i] = v;
        }
        workgroupBarrier();
        for (var px = slice; px < GH * GWD; px += 16u) {
            let gv = gyt[px * 4u + q];
            let b = ci * area + (px / GWD) * aw + px % GWD;
            a0 += gv * xw[b];
            a1 += gv * xw[b + 1u];
            a2 += gv * xw[b + 2u];
            a3 += gv * xw[b + aw];
            a4 += gv * xw[b + aw + 1u];
            a5 += gv * xw[b + aw + 2u];
            a6 += gv * xw[b + 2u * aw];
            a7 += gv * xw[b + 2u * aw + 1u];
            a8 += gv * xw[b + 2u * aw + 2u];
        }
        workgroupBarrier();
    }
    // This chunk's sums: partial[chunk] as [Cout, Cin, 3, 3], for this workgroup's channels.
    let co0 = cg * CO;
    let c0 = cig * CI;
    let cb = chunk * p.cout * p.cin * 9u;
    reduce_tap(lid, 0u, a0, co0, c0, cb);
    reduce_tap(lid, 1u, a1, co0, c0, cb);
    reduce_tap(lid, 2u, a2, co0, c0, cb);
    reduce_tap(lid, 3u, a3, co0, c0, cb);
    reduce_tap(lid, 4u, a4, co0, c0, cb);
    reduce_tap(lid, 5u, a5, co0, c0, cb);
    reduce_tap(lid, 6u, a6, co0, c0, cb);
    reduce_tap(lid, 7u, a7, co0, c0, cb);
    reduce_tap(lid, 8u, a8, co0, c0, cb);
}
