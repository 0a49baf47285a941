// SimAM, the parameter-free attention of Yang et al., "SimAM: A Simple, Parameter-Free
// Attention Module for Convolutional Neural Networks", ICML 2021, as its official code
// (github.com/ZjjConan/SimAM, networks/attentions/simam_module.py) computes it per (n, c)
// plane of m = H·W values:
//   μ = mean(x), d_i = (x_i − μ)², D = 4 (Σ d / (m − 1) + λ), t_i = d_i / D + 0.5,
//   y_i = x_i · σ(t_i)
// (t is the inverse of the minimal energy, eq. 6 of the paper). One workgroup per plane; the
// forward keeps (μ, D) per plane for the backward, which recomputes d, t and σ from x.

struct P {
    planes: u32, // N·C
    m: u32,      // H·W, at least 2 (the Rust side rejects 1×1 planes: m − 1 = 0)
    lambda: f32,
    _pad: u32,
}

// Invocations per workgroup: 8 on CPU drivers, which run a workgroup on one thread and pay
// for every barrier of the sums' tree (src/ops/simam.rs replaces it), else 256.
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: P;

// forward
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<vec2<f32>>;

// backward: x and stats as bound above (read-only), and gy.
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bstats: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> gy: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;

var<workgroup> red: array<vec2<f32>, WG>;

// Sum of v over the workgroup (a fixed tree); every invocation gets the result.
fn wg_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if lid < w { red[lid] += red[lid + w]; }
        workgroupBarrier();
    }
    let s = red[0];
    workgroupBarrier();
    return s;
}

// t ≥ 0.5, so exp(−t) ≤ 0.61 and the quotient never overflows.
fn sigmoid(t: f32) -> f32 {
    return 1.0 / (1.0 + exp(-t));
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane = wid.x + wid.y * nwg.x;
    if plane >= p.planes { return; }
    let base = plane * p.m;
    let m = f32(p.m);
    var s = 0.0;
    for (var j = lid; j < p.m; j += WG) { s += x[base + j]; }
    let mu = wg_sum(lid, vec2<f32>(s, 0.0)).x / m;
    // Σ (x − μ)² from the deviations (a second pass), not Σx² − mμ², which cancels.
    var q = 0.0;
    for (var j = lid; j < p.m; j += WG) {
        let c = x[base + j] - mu;
        q += c * c;
    }
    let big_d = 4.0 * (wg_sum(lid, vec2<f32>(q, 0.0)).x / (m - 1.0) + p.lambda);
    for (var j = lid; j < p.m; j += WG) {
        let v = x[base + j];
        let c = v - mu;
        y[base + j] = v * sigmoid(c * c / big_d + 0.5);
    }
    if lid == 0u { stats[plane] = vec2<f32>(mu, big_d); }
}

// With s_i = σ(t_i), c_i = x_i − μ and gt_i = gy_i · x_i · s_i (1 − s_i) (the gradient at t_i):
//   gD = −Σ gt_i d_i / D², and D = 4 (Σ d / (m − 1) + λ) gives every d_j gS = 4 gD / (m − 1);
//   gd_i = gt_i / D + gS;
//   gx_i = gy_i s_i + 2 c_i gd_i − (2 / m) Σ_j c_j gd_j   (the last term through μ),
// where Σ_j c_j gd_j = Σ_j c_j gt_j / D, since Σ_j c_j = 0.
@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane = wid.x + wid.y * nwg.x;
    if plane >= p.planes { return; }
    let base = plane * p.m;
    let m = f32(p.m);
    let st = bstats[plane];
    let mu = st.x;
    let big_d = st.y;
    // (Σ gt d, Σ gt c)
    var acc = vec2<f32>(0.0);
    for (var j = lid; j < p.m; j += WG) {
        let v = bx[base + j];
        let c = v - mu;
        let d = c * c;
        let s = sigmoid(d / big_d + 0.5);
        let gt = gy[base + j] * v * s * (1.0 - s);
        acc += vec2<f32>(gt * d, gt * c);
    }
    let sums = wg_sum(lid, acc);
    let g_s = -4.0 * sums.x / (big_d * big_d * (m - 1.0));
    let through_mu = 2.0 * sums.y / (big_d * m);
    for (var j = lid; j < p.m; j += WG) {
        let v = bx[base + j];
        let c = v - mu;
        let d = c * c;
        let s = sigmoid(d / big_d + 0.5);
        let g = gy[base + j];
        let gt = g * v * s * (1.0 - s);
        gx[base + j] = g * s + 2.0 * c * (gt / big_d + g_s) - through_mu;
    }
}
