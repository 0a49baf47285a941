// Depthwise convolutions (groups == Cin == Cout, stride 1, "same" padding) for CPU-class
// adapters (lavapipe): no workgroup memory, no barriers, vec4 loads only along W. lavapipe
// loads a storage buffer lane by lane in a loop (as dear for a vec4 as for one f32), so these
// kernels load each source row segment once as vec4s into registers and reuse it for every
// tap and output row that reads it. x [N, C, H, W] with W a multiple of 4, w [C, 1, KS, KS].
//
// This file is not valid WGSL alone: src/ops/conv/depthwise_cpu.rs prefixes each variant with
// its constants:
//   KS   kernel size (KS × KS), DIL its dilation; padding PAD = (KS − 1)·DIL / 2 (output size =
//        input size)
//   P    output rows per invocation, DIL apart (so that every source row it loads reaches
//        all of them)
//   Q    vec4 quads (4 adjacent pixels) of each row per invocation
//   WG   invocations per workgroup
// Loops have constant bounds so that the driver unrolls them and keeps the arrays in
// registers.

const KK: u32 = KS * KS;
const PAD: u32 = (KS - 1u) * DIL / 2u;
// vec4 blocks loaded left (and right) of an invocation's quads, the window's blocks, and the
// window index of pixel 4·q0 − PAD.
const LB: u32 = (PAD + 3u) / 4u;
const NB: u32 = Q + 2u * LB;
const OFF: u32 = 4u * LB - PAD;
// Source rows an invocation loads: row m is output row j's kernel row m − j.
const NR: u32 = P + KS - 1u;

// items = planes · groups · qblocks invocations for conv; for grad_w C · slots, each slot
// walking the items (n, group, qblock) of its channel `slot`, `slot + slots`, ...
struct DwP {
    planes: u32, c: u32, h: u32, w4: u32,
    groups: u32, qblocks: u32, items: u32, flip: u32,
    has_bias: u32, accumulate: u32, slots: u32, per_c: u32,
}

@group(0) @binding(0) var<uniform> dp: DwP;

// Row group g of a plane: output rows base, base + DIL, ... (P of them).
fn group_base(g: u32) -> u32 {
    return (g / DIL) * P * DIL + g % DIL;
}

// `conv`: forward (src = x, extra = bias with has_bias) and grad_x (src = gy, weights flipped
// with flip, extra = gx_in with accumulate): out[n, c, oy, ox] = extra + sum over ky, kx of
// src[n, c, oy − PAD + ky·DIL, ox − PAD + kx·DIL] · w[c, ky, kx]. One invocation per (plane,
// row group, block of Q quads), adjacent invocations adjacent blocks.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> extra: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let item = gid.x + gid.y * nwg.x * WG;
    if item >= dp.items { return; }
    let qb = item % dp.qblocks;
    let rest = item / dp.qblocks;
    let g = rest % dp.groups;
    let plane = rest / dp.groups;
    let ch = plane % dp.c;
    let base = group_base(g);
    let q0 = qb * Q;
    var wv: array<f32, KK>;
    for (var t = 0u; t < KK; t++) {
        wv[t] = wt[ch * KK + select(t, KK - 1u - t, dp.flip == 1u)];
    }
    var acc: array<vec4<f32>, P * Q>;
    for (var i = 0u; i < P * Q; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let pb = plane * dp.h * dp.w4;
    for (var m = 0u; m < NR; m++) {
        let iy = i32(base + m * DIL) - i32(PAD);
        let rok = iy >= 0 && iy < i32(dp.h);
        let rb = pb + select(0u, u32(iy), rok) * dp.w4;
        var win: array<f32, 4u * NB>;
        for (var b = 0u; b < NB; b++) {
            let qi = i32(q0 + b) - i32(LB);
            let ok = rok && qi >= 0 && qi < i32(dp.w4);
            let v = select(vec4<f32>(0.0), src4[rb + select(0u, u32(qi), ok)], ok);
            for (var e = 0u; e < 4u; e++) {
                win[4u * b + e] = v[e];
            }
        }
        for (var j = 0u; j < P; j++) {
            if m < j || m - j >= KS { continue; }
            let ky = m - j;
            for (var kx = 0u; kx < KS; kx++) {
                let wk = wv[ky * KS + kx];
                for (var qq = 0u; qq < Q; qq++) {
                    let s = OFF + kx * DIL + 4u * qq;
                    acc[j * Q + qq] += wk * vec4<f32>(win[s], win[s + 1u], win[s + 2u], win[s + 3u]);
                }
            }
        }
    }
    for (var j = 0u; j < P; j++) {
        let oy = base + j * DIL;
        if oy >= dp.h { break; }
        for (var qq = 0u; qq < Q; qq++) {
            let q = q0 + qq;
            if q >= dp.w4 { break; }
            let o = pb + oy * dp.w4 + q;
            var v = acc[j * Q + qq];
            if dp.has_bias == 1u { v += vec4<f32>(extra[ch]); }
            if dp.accumulate == 1u {
                v += vec4<f32>(extra[4u * o], extra[4u * o + 1u], extra[4u * o + 2u], extra[4u * o + 3u]);
            }
            dst4[o] = v;
        }
    }
}

// `grad_w`: gw[c, ky, kx] = sum over n, oy, ox of gy[n, c, oy, ox] · x[n, c, oy − PAD + ky·DIL,
// ox − PAD + kx·DIL], and gb[c] = the sum of gy (tap KK). Invocation (c, slot) walks its
// channel's items (n, row group, quad block) slot, slot + slots, ...: it loads the item's
// gy quads once, then each source row once, and dots them per tap. Its KK + 1 sums go to
// partial[(c · slots + slot) · (KK + 1) + t]; grad_w_reduce adds the slots in order.
@group(0) @binding(1) var<storage, read> gy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(WG)
fn grad_w(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let inv = gid.x + gid.y * nwg.x * WG;
    if inv >= dp.items { return; }
    let ch = inv / dp.slots;
    let slot = inv % dp.slots;
    var acc: array<f32, KK>;
    for (var t = 0u; t < KK; t++) {
        acc[t] = 0.0;
    }
    var accb = vec4<f32>(0.0);
    for (var it = slot; it < dp.per_c; it += dp.slots) {
        let qb = it % dp.qblocks;
        let rest = it / dp.qblocks;
        let g = rest % dp.groups;
        let n = rest / dp.groups;
        let base = group_base(g);
        let q0 = qb * Q;
        let pb = (n * dp.c + ch) * dp.h * dp.w4;
        var gv: array<vec4<f32>, P * Q>;
        for (var j = 0u; j < P; j++) {
            let oy = base + j * DIL;
            for (var qq = 0u; qq < Q; qq++) {
                let q = q0 + qq;
                let ok = oy < dp.h && q < dp.w4;
                gv[j * Q + qq] = select(vec4<f32>(0.0), gy4[select(0u, pb + oy * dp.w4 + q, ok)], ok);
                accb += gv[j * Q + qq];
            }
        }
        for (var m = 0u; m < NR; m++) {
            let iy = i32(base + m * DIL) - i32(PAD);
            let rok = iy >= 0 && iy < i32(dp.h);
            let rb = pb + select(0u, u32(iy), rok) * dp.w4;
            var win: array<f32, 4u * NB>;
            for (var b = 0u; b < NB; b++) {
                let qi = i32(q0 + b) - i32(LB);
                let ok = rok && qi >= 0 && qi < i32(dp.w4);
                let v = select(vec4<f32>(0.0), x4[rb + select(0u, u32(qi), ok)], ok);
                for (var e = 0u; e < 4u; e++) {
                    win[4u * b + e] = v[e];
                }
            }
            for (var j = 0u; j < P; j++) {
                if m < j || m - j >= KS { continue; }
                let ky = m - j;
                for (var kx = 0u; kx < KS; kx++) {
                    var s4 = vec4<f32>(0.0);
                    for (var qq = 0u; qq < Q; qq++) {
                        let s = OFF + kx * DIL + 4u * qq;
                        s4 += gv[j * Q + qq] * vec4<f32>(win[s], win[s + 1u], win[s + 2u], win[s + 3u]);
                    }
                    acc[ky * KS + kx] += s4.x + s4.y + s4.z + s4.w;
                }
            }
        }
    }
    let o = inv * (KK + 1u);
    for (var t = 0u; t < KK; t++) {
        partial[o + t] = acc[t];
    }
    partial[o + KK] = accb.x + accb.y + accb.z + accb.w;
}

// gw[c, t] (t < KK) and, with has_bias, gb[c] (t == KK) = the sum of partial over c's slots
// in order (gb is bound to gw too when there is no bias).
@group(0) @binding(1) var<storage, read> partial_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> gw: array<f32>;
@group(0) @binding(3) var<storage, read_write> gb: array<f32>;

@compute @workgroup_size(WG)
fn grad_w_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= dp.c * (KK + 1u) { return; }
    let ch = i / (KK + 1u);
    let t = i % (KK + 1u);
    var s = 0.0;
    for (var k = 0u; k < dp.slots; k++) {
        s += partial_in[(ch * dp.slots + k) * (KK + 1u) + t];
    }
    if t < KK {
        gw[ch * KK + t] = s;
    } else if dp.has_bias == 1u {
        gb[ch] = s;
    }
}
