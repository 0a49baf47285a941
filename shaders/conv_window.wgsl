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
//            transposed kernel), row offset (K−1)·dil − pad.

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
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // bound to wt without bias
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

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
            if p.has_bias == 1u { v += bias[co]; }
            dst[((n * p.cout + co) * p.oh + oy) * p.ow + ox] = v;
        }
    }
}
