// Softmax attention per batch entry b (BiFormer's per-region, per-head attention):
// O_t = Σ_s softmax_s(scale·Q_t·K_s) V_s, for Q [B, T, D], K [B, S, D], V [B, S, E].
// The probabilities are not kept: the forward stores each row's log-sum-exp, and the backward
// recomputes p_ts = exp(scale·Q_t·K_s − lse_t) (memory O(B·T) instead of O(B·T·S)):
//   dP_ts = dO_t·V_s,  δ_t = dO_t·O_t (= Σ_s p_ts dP_ts),  dS_ts = p_ts (dP_ts − δ_t),
//   dQ_t = scale Σ_s dS_ts K_s,  dK_s = scale Σ_t dS_ts Q_t,  dV_s = Σ_t p_ts dO_t.
// One invocation per row (forward, dQ: a query row; dK and dV: a key row), the row's D or E
// accumulators in private arrays.

struct P {
    b: u32,
    t: u32,
    s: u32,
    d: u32,
    e: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

const MAX_DIM: u32 = 64u;

@group(0) @binding(0) var<uniform> p: P;

// forward: q, k, v -> o, lse
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

// backward_q: q, k, v, o, lse, go -> gq, delta.   backward_kv: q, k, v, lse, delta, go -> gk, gv
@group(0) @binding(4) var<storage, read> o_in: array<f32>;
@group(0) @binding(5) var<storage, read> lse_in: array<f32>;
@group(0) @binding(6) var<storage, read> go: array<f32>;
@group(0) @binding(7) var<storage, read_write> gq: array<f32>;
@group(0) @binding(8) var<storage, read_write> delta: array<f32>;

@group(0) @binding(4) var<storage, read> lse_kv: array<f32>;
@group(0) @binding(5) var<storage, read> delta_kv: array<f32>;
@group(0) @binding(6) var<storage, read> go_kv: array<f32>;
@group(0) @binding(7) var<storage, read_write> gk: array<f32>;
@group(0) @binding(8) var<storage, read_write> gv: array<f32>;

fn row_id(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 64u;
}

// scale·Q_t·K_s of batch entry bi.
fn score(bi: u32, t: u32, s: u32) -> f32 {
    let qo = (bi * p.t + t) * p.d;
    let ko = (bi * p.s + s) * p.d;
    var a = 0.0;
    for (var c = 0u; c < p.d; c++) { a += q[qo + c] * k[ko + c]; }
    return p.scale * a;
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = row_id(id, nwg);
    if row >= p.b * p.t { return; }
    let bi = row / p.t;
    let t = row % p.t;
    // Online softmax (Milakov & Gimelshein 2018): the running max m and sum l, the
    // accumulator rescaled whenever m grows.
    var acc: array<f32, MAX_DIM>;
    for (var c = 0u; c < p.e; c++) { acc[c] = 0.0; }
    var m = score(bi, t, 0u);
    var l = 0.0;
    for (var s = 0u; s < p.s; s++) {
        let a = score(bi, t, s);
        let m_new = max(m, a);
        let corr = exp(m - m_new);
        let w = exp(a - m_new);
        l = l * corr + w;
        let vo = (bi * p.s + s) * p.e;
        for (var c = 0u; c < p.e; c++) { acc[c] = acc[c] * corr + w * v[vo + c]; }
        m = m_new;
    }
    let oo = row * p.e;
    for (var c = 0u; c < p.e; c++) { o[oo + c] = acc[c] / l; }
    lse[row] = m + log(l);
}

@compute @workgroup_size(64)
fn backward_q(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = row_id(id, nwg);
    if row >= p.b * p.t { return; }
    let bi = row / p.t;
    let t = row % p.t;
    let oo = row * p.e;
    var dl = 0.0;
    for (var c = 0u; c < p.e; c++) { dl += go[oo + c] * o_in[oo + c]; }
    delta[row] = dl;
    var acc: array<f32, MAX_DIM>;
    for (var c = 0u; c < p.d; c++) { acc[c] = 0.0; }
    for (var s = 0u; s < p.s; s++) {
        let pr = exp(score(bi, t, s) - lse_in[row]);
        let vo = (bi * p.s + s) * p.e;
        var dp = 0.0;
        for (var c = 0u; c < p.e; c++) { dp += go[oo + c] * v[vo + c]; }
        let ds = pr * (dp - dl);
        let ko = (bi * p.s + s) * p.d;
        for (var c = 0u; c < p.d; c++) { acc[c] += ds * k[ko + c]; }
    }
    let qo = row * p.d;
    for (var c = 0u; c < p.d; c++) { gq[qo + c] = p.scale * acc[c]; }
}

@compute @workgroup_size(64)
fn backward_kv(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = row_id(id, nwg);
    if row >= p.b * p.s { return; }
    let bi = row / p.s;
    let s = row % p.s;
    var ak: array<f32, MAX_DIM>;
    var av: array<f32, MAX_DIM>;
    for (var c = 0u; c < p.d; c++) { ak[c] = 0.0; }
    for (var c = 0u; c < p.e; c++) { av[c] = 0.0; }
    let vo = row * p.e;
    for (var t = 0u; t < p.t; t++) {
        let qrow = bi * p.t + t;
        let pr = exp(score(bi, t, s) - lse_kv[qrow]);
        let oo = qrow * p.e;
        var dp = 0.0;
        for (var c = 0u; c < p.e; c++) {
            dp += go_kv[oo + c] * v[vo + c];
            av[c] += pr * go_kv[oo + c];
        }
        let ds = pr * (dp - delta_kv[qrow]);
        let qo = qrow * p.d;
        for (var c = 0u; c < p.d; c++) { ak[c] += ds * q[qo + c]; }
    }
    let ko = row * p.d;
    for (var c = 0u; c < p.d; c++) { gk[ko + c] = p.scale * ak[c]; }
    for (var c = 0u; c < p.e; c++) { gv[vo + c] = av[c]; }
}
