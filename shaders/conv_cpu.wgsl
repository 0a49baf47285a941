// Dense convolutions for CPU-class adapters (lavapipe): register-blocked kernels with no
// workgroup memory and no barriers, whose loads are contiguous across adjacent invocations
// and whose weight loads are uniform over a workgroup (their addresses depend only on the
// workgroup id and loop counters). x [N, Cin, H, W], w [Cout, Cin, KH, KW], groups == 1.
//
// This file is not valid WGSL alone: src/ops/conv_cpu.rs prefixes each variant with its
// block sizes as module constants:
//   WG  invocations per workgroup (lavapipe runs a workgroup on one CPU thread, 8 lanes per
//       SIMD vector)
//   K   channels per invocation of `conv` (a multiple of 4: K / 4 vec4 accumulators)
//   P   rows per invocation of `conv` (each a pixel in the same column)
//   KO  output channels per invocation of `grad_w` (a multiple of 4)
//   T   taps (ci, ky, kx) per invocation of `grad_w`
//   KS  the kernel size of `quad` and `wt_pack` (KS × KS, padding (KS − 1) / 2)
// Accumulators are arrays indexed only by constant-bound loop counters, so that the driver
// unrolls the loops and keeps them in registers.

const KB: u32 = K / 4u;
const KO4: u32 = KO / 4u;
const PADK: u32 = (KS - 1u) / 2u;

// `conv` computes forward and grad_x as one correlation:
//   out[n, c, fy + qy·dst_step, fx + qx·dst_step] = extra + sum over r, ky, kx of
//       src[n, r, qy·src_step + oy(ky), qx·src_step + ox(kx)] · w[c·cstride + r·rstride + ky·kw + kx]
// where a tap's offset is num / div, num = f + c0 + sign·k·dil, and a tap whose num is not a
// multiple of div does not reach the phase (f = fy or fx).
//   forward: src = x, out = y, c = Cout, r = Cin, src_step = stride, dst_step = 1, one phase,
//            num = k·dil − pad, div = 1; extra = bias[c] with has_bias.
//   grad_x:  src = gy, out = gx, c = Cin, r = Cout, src_step = 1, dst_step = stride, one
//            workgroup z per (n, phase (fy, fx)), num = f + pad − k·dil, div = stride;
//            extra = gx_in[out index] with accumulate (the gradient x already had).
// Workgroup (x: tile, y: channel block, z: n · phases + phase); a tile is P rows by WG
// columns of the phase's grid, one column per invocation.
struct ConvP {
    n: u32, r: u32, sh: u32, sw: u32,
    c: u32, dh: u32, dw: u32, kh: u32,
    kw: u32, dil: u32, cstride: u32, rstride: u32,
    src_step: u32, dst_step: u32, sign: i32, c0: i32,
    div: i32, phases_x: u32, tiles_x: u32, has_bias: u32,
    accumulate: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> cp: ConvP;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> extra: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let phases = cp.phases_x * cp.phases_x;
    let n = wid.z / phases;
    let ph = wid.z % phases;
    let fy = ph / cp.phases_x;
    let fx = ph % cp.phases_x;
    // The phase's grid: dst rows fy, fy + dst_step, ...
    let ny = (cp.dh - min(fy, cp.dh) + cp.dst_step - 1u) / cp.dst_step;
    let nx = (cp.dw - min(fx, cp.dw) + cp.dst_step - 1u) / cp.dst_step;
    let qy0 = (wid.x / cp.tiles_x) * P;
    let qx = (wid.x % cp.tiles_x) * WG + lane;
    if qy0 >= ny { return; }
    let c0 = wid.y * K;
    // Weight offsets of the block's channels (clamped: channels past C read the last one and
    // are not stored).
    var wb: array<vec4<u32>, KB>;
    for (var b = 0u; b < KB; b++) {
        let ch = min(vec4<u32>(c0 + 4u * b) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(cp.c - 1u));
        wb[b] = ch * cp.cstride;
    }
    var acc: array<vec4<f32>, KB * P>;
    for (var i = 0u; i < KB * P; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let plane = cp.sh * cp.sw;
    let sbase = n * cp.r * plane;
    for (var ky = 0u; ky < cp.kh; ky++) {
        let numy = i32(fy) + cp.c0 + cp.sign * i32(ky * cp.dil);
        if numy % cp.div != 0 { continue; }
        let offy = numy / cp.div;
        for (var kx = 0u; kx < cp.kw; kx++) {
            let numx = i32(fx) + cp.c0 + cp.sign * i32(kx * cp.dil);
            if numx % cp.div != 0 { continue; }
            let sx = i32(qx * cp.src_step) + numx / cp.div;
            let okx = qx < nx && sx >= 0 && sx < i32(cp.sw);
            var idx: array<u32, P>;
            var ok: array<bool, P>;
            for (var j = 0u; j < P; j++) {
                let sy = i32((qy0 + j) * cp.src_step) + offy;
                ok[j] = okx && qy0 + j < ny && sy >= 0 && sy < i32(cp.sh);
                idx[j] = select(0u, sbase + u32(sy) * cp.sw + u32(sx), ok[j]);
            }
            let tap = ky * cp.kw + kx;
            for (var ri = 0u; ri < cp.r; ri++) {
                let so = ri * plane;
                var v: array<f32, P>;
                for (var j = 0u; j < P; j++) {
                    v[j] = select(0.0, src[idx[j] + so], ok[j]);
                }
                let wo = ri * cp.rstride + tap;
                for (var b = 0u; b < KB; b++) {
                    let a = wb[b] + vec4<u32>(wo);
                    let wv = vec4<f32>(wt[a.x], wt[a.y], wt[a.z], wt[a.w]);
                    for (var j = 0u; j < P; j++) {
                        acc[j * KB + b] += v[j] * wv;
                    }
                }
            }
        }
    }
    if qx >= nx { return; }
    let dx = fx + qx * cp.dst_step;
    for (var j = 0u; j < P; j++) {
        if qy0 + j >= ny { break; }
        let dy = fy + (qy0 + j) * cp.dst_step;
        for (var b = 0u; b < KB; b++) {
            let sums = acc[j * KB + b];
            for (var e = 0u; e < 4u; e++) {
                let ch = c0 + 4u * b + e;
                if ch < cp.c {
                    let o = ((n * cp.c + ch) * cp.dh + dy) * cp.dw + dx;
                    var v = sums[e];
                    if cp.has_bias == 1u { v += extra[ch]; }
                    if cp.accumulate == 1u { v += extra[o]; }
                    dst[o] = v;
                }
            }
        }
    }
}

// grad_w and grad_b: gw[co, t] = sum over n, oy, ox of gy[n, co, oy, ox] · x at tap t =
// (ci, ky, kx) of that output; with has_bias the tap t == taps is a column of ones, whose
// sums are gb. Workgroup (x: weight block of KO channels × T taps, y: chunk of N·Ho output
// rows); its invocations walk the chunk's rows in segments of WG columns, one column each, so
// that their loads of gy and x are contiguous. Each invocation writes its sums to
// partial[chunk · WG + lane, co, t]; grad_w_reduce adds the WG · chunks slots in order.
struct GradWP {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, dil: u32,
    taps: u32, taps_ext: u32, tblocks: u32, rows: u32,
    segs: u32, slots: u32, has_bias: u32, pad0: u32,
}

@group(0) @binding(0) var<uniform> gp: GradWP;
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(WG)
fn grad_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let co0 = (wid.x / gp.tblocks) * KO;
    let t0 = (wid.x % gp.tblocks) * T;
    let hw = gp.h * gp.w;
    let pl = gp.ho * gp.wo;
    // The block's taps: x's plane offset and the tap's row and column offsets; `one` marks
    // the bias column, `live` the taps that exist.
    var xo: array<u32, T>;
    var offy: array<i32, T>;
    var offx: array<i32, T>;
    var live: array<bool, T>;
    var one: array<bool, T>;
    let kk = gp.kh * gp.kw;
    for (var i = 0u; i < T; i++) {
        let t = min(t0 + i, gp.taps - 1u);
        let ci = t / kk;
        let ky = (t % kk) / gp.kw;
        let kx = t % gp.kw;
        xo[i] = ci * hw;
        offy[i] = i32(ky * gp.dil) - i32(gp.pad);
        offx[i] = i32(kx * gp.dil) - i32(gp.pad);
        live[i] = t0 + i < gp.taps;
        one[i] = t0 + i == gp.taps && gp.has_bias == 1u;
    }
    var gyo: array<vec4<u32>, KO4>;
    for (var b = 0u; b < KO4; b++) {
        let ch = min(vec4<u32>(co0 + 4u * b) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(gp.cout - 1u));
        gyo[b] = ch * pl;
    }
    var acc: array<vec4<f32>, KO4 * T>;
    for (var i = 0u; i < KO4 * T; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let total = gp.n * gp.ho;
    let r0 = wid.y * gp.rows;
    let r1 = min(r0 + gp.rows, total);
    for (var r = r0; r < r1; r++) {
        let n = r / gp.ho;
        let oy = r % gp.ho;
        let gyb = n * gp.cout * pl + oy * gp.wo;
        let xb = n * gp.cin * hw;
        for (var s = 0u; s < gp.segs; s++) {
            let ox = s * WG + lane;
            let okx = ox < gp.wo;
            var g: array<vec4<f32>, KO4>;
            for (var b = 0u; b < KO4; b++) {
                let a = gyo[b] + vec4<u32>(select(0u, gyb + ox, okx));
                g[b] = select(vec4<f32>(0.0), vec4<f32>(gy[a.x], gy[a.y], gy[a.z], gy[a.w]), okx);
            }
            for (var i = 0u; i < T; i++) {
                let iy = i32(oy * gp.stride) + offy[i];
                let ix = i32(ox * gp.stride) + offx[i];
                let ok = okx && live[i] && iy >= 0 && iy < i32(gp.h) && ix >= 0 && ix < i32(gp.w);
                let a = select(0u, xb + xo[i] + u32(iy) * gp.w + u32(ix), ok);
                let v = select(select(0.0, 1.0, one[i] && okx), xin[a], ok);
                for (var b = 0u; b < KO4; b++) {
                    acc[i * KO4 + b] += v * g[b];
                }
            }
        }
    }
    let slot = wid.y * WG + lane;
    for (var i = 0u; i < T; i++) {
        let t = t0 + i;
        if t >= gp.taps_ext { break; }
        for (var b = 0u; b < KO4; b++) {
            let sums = acc[i * KO4 + b];
            for (var e = 0u; e < 4u; e++) {
                let co = co0 + 4u * b + e;
                if co < gp.cout {
                    partial[(slot * gp.cout + co) * gp.taps_ext + t] = sums[e];
                }
            }
        }
    }
}

// gw[co, t] (t < taps) and gb[co] (t == taps) = the sum of partial[s, co, t] over the slots
// s in order (gb is bound to gw too when there is no bias).
@group(0) @binding(2) var<storage, read_write> gw: array<f32>;
@group(0) @binding(3) var<storage, read_write> gb: array<f32>;

@compute @workgroup_size(WG)
fn grad_w_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let numel = gp.cout * gp.taps_ext;
    if i >= numel { return; }
    var s = 0.0;
    for (var k = 0u; k < gp.slots; k++) {
        s += partial_in[k * numel + i];
    }
    let co = i / gp.taps_ext;
    let t = i % gp.taps_ext;
    if t < gp.taps {
        gw[co * gp.taps + t] = s;
    } else {
        gb[co] = s;
    }
}

@group(0) @binding(1) var<storage, read> partial_in: array<f32>;

// `quad`: stride-1, "same"-padded (pad = (KS − 1) / 2) KS×KS convolutions of maps whose
// width is a multiple of 4, for forward and grad_x. lavapipe loads a storage buffer lane by
// lane in a loop (about the same cost for a vec4 as for one f32), so this kernel loads
// vec4s only: each invocation sums 4 adjacent pixels (one aligned vec4 of a row) of P rows
// for K channels. Per source channel and kernel row it loads the row's aligned vec4 and its
// neighbours (the window reaches PADK ≤ 4 pixels past it) and K / 4 vec4s of packed weights
// per tap (wt_pack: [r][ky][kx][c] with c padded to a multiple of K), and does 4·K·P FMAs
// per tap. Invocations take (row group, quad) items of a map, adjacent ones adjacent quads.
//   forward: src = x, r = Cin, c = Cout, weights packed from w; extra = bias[c] with has_bias
//   grad_x:  src = gy, r = Cout, c = Cin, weights packed transposed and flipped; extra =
//            gx_in with accumulate
struct QuadP {
    n: u32, r: u32, h: u32, w4: u32,
    c: u32, c_pad: u32, rows: u32, items: u32,
    has_bias: u32, accumulate: u32, flip: u32, pad0: u32,
}

@group(0) @binding(0) var<uniform> qp: QuadP;
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst4: array<vec4<f32>>;

const WIN: u32 = 12u;

@compute @workgroup_size(WG)
fn quad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let item = wid.x * WG + lane;
    let n = wid.z;
    let c0 = wid.y * K;
    let live = item < qp.items;
    let q = item % qp.w4;
    let oy0 = (item / qp.w4) * P;
    var acc: array<vec4<f32>, K * P>;
    for (var i = 0u; i < K * P; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let plane = qp.h * qp.w4;
    for (var ri = 0u; ri < qp.r; ri++) {
        let sb = (n * qp.r + ri) * plane;
        let wr = ri * KS * KS * (qp.c_pad / 4u) + c0 / 4u;
        for (var ky = 0u; ky < KS; ky++) {
            // The K channels' weights of this kernel row: wv[kx * KB + b].
            var wv: array<vec4<f32>, KS * KB>;
            for (var kx = 0u; kx < KS; kx++) {
                for (var b = 0u; b < KB; b++) {
                    wv[kx * KB + b] = wt4[wr + (ky * KS + kx) * (qp.c_pad / 4u) + b];
                }
            }
            for (var j = 0u; j < P; j++) {
                let iy = i32(oy0 + j + ky) - i32(PADK);
                let rok = live && iy >= 0 && iy < i32(qp.h);
                let rb = sb + select(0u, u32(iy), rok) * qp.w4;
                // Pixels 4q − 4 .. 4q + 7 of the row (zero outside it).
                var win: array<f32, WIN>;
                let mid = select(vec4<f32>(0.0), src4[rb + q], rok);
                var left = vec4<f32>(0.0);
                var right = vec4<f32>(0.0);
                if PADK > 0u {
                    left = select(vec4<f32>(0.0), src4[rb + max(q, 1u) - 1u], rok && q > 0u);
                    right = select(vec4<f32>(0.0), src4[rb + min(q + 1u, qp.w4 - 1u)], rok && q + 1u < qp.w4);
                }
                for (var e = 0u; e < 4u; e++) {
                    win[e] = left[e];
                    win[4u + e] = mid[e];
                    win[8u + e] = right[e];
                }
                for (var kx = 0u; kx < KS; kx++) {
                    let s = 4u + kx - PADK;
                    let sv = vec4<f32>(win[s], win[s + 1u], win[s + 2u], win[s + 3u]);
                    for (var b = 0u; b < KB; b++) {
                        let wb = wv[kx * KB + b];
                        for (var e = 0u; e < 4u; e++) {
                            acc[j * K + 4u * b + e] += sv * wb[e];
                        }
                    }
                }
            }
        }
    }
    if !live { return; }
    for (var j = 0u; j < P; j++) {
        let oy = oy0 + j;
        if oy >= qp.h { break; }
        for (var c = 0u; c < K; c++) {
            let ch = c0 + c;
            if ch < qp.c {
                let o = ((n * qp.c + ch) * qp.h + oy) * qp.w4 + q;
                var v = acc[j * K + c];
                if qp.has_bias == 1u { v += vec4<f32>(extra[ch]); }
                if qp.accumulate == 1u {
                    v += vec4<f32>(extra[4u * o], extra[4u * o + 1u], extra[4u * o + 2u], extra[4u * o + 3u]);
                }
                dst4[o] = v;
            }
        }
    }
}

// Packs w [Cout, Cin, KS, KS] for `quad` as [r][ky][kx][c_pad]: forward r = Cin, c = Cout;
// with flip (grad_x) r = Cout, c = Cin and the taps mirrored. Channels past C are zero.
@group(0) @binding(1) var<storage, read> wsrc: array<f32>;
@group(0) @binding(2) var<storage, read_write> wpacked: array<f32>;

@compute @workgroup_size(WG)
fn wt_pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let kk = KS * KS;
    if i >= qp.r * kk * qp.c_pad { return; }
    let c = i % qp.c_pad;
    let tap = (i / qp.c_pad) % kk;
    let r = i / (qp.c_pad * kk);
    var v = 0.0;
    if c < qp.c {
        if qp.flip == 1u {
            v = wsrc[(r * qp.c + c) * kk + kk - 1u - tap];
        } else {
            v = wsrc[(c * qp.r + r) * kk + tap];
        }
    }
    wpacked[i] = v;
}
