// Fused classification losses on logits z [N, C] with labels y [N]:
//   L = θ · mean_i(−α_y (1−p_y)^γ log p_y) + (1−θ) · Σ_i w_y ℓ_i / Σ_i w_y,
//   ℓ_i = −(1−ε_y) log p_y − ε_y · mean_j log p_j,
// p = softmax(s·(z − Δ_y·onehot(y))). Focal-only is θ = 1, (weighted) CE is θ = 0; α and w
// default to ones, the margins Δ and the smoothing ε to zeros and the scale s to 1 (LDAM sets
// Δ and s; MiSLAS's label-aware smoothing sets ε, Zhong et al. 2021 eq. 4, their
// `LabelAwareSmoothing`, θ = 0: the focal term's gradient row would be the unsmoothed one).
// Three
// passes: `rows` (one workgroup per sample: log-softmax, p_y, the loss terms and the unscaled
// gradient row s·(p − onehot(y))), `batch` (one workgroup: the batch sums, the loss value and
// the two normalisers) and `scale` (each gradient row times its coefficient).

struct P {
    n: u32,
    c: u32,
    theta: f32,
    gamma: f32,
    s: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;

// rows
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;   // α[C], w[C], Δ[C], then ε[C]
@group(0) @binding(4) var<storage, read_write> terms: array<vec4<f32>>;  // per sample
@group(0) @binding(5) var<storage, read_write> gz: array<f32>;

// batch
@group(0) @binding(1) var<storage, read> terms_in: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> value: array<f32>;
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;  // [θ/N, (1−θ)/Σw]

// scale (terms_in and coef_in as inputs, gz at binding 3)
@group(0) @binding(2) var<storage, read> coef_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;

var<workgroup> red: array<vec4<f32>, 256>;

// A quiet NaN, built at run time: a NaN constant expression is a shader-creation error in
// WGSL (browsers refuse the module; naga lets it pass).
fn nan() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

// Sums v over the workgroup; with `is_max`, takes the component-wise max instead.
fn reduce(v: vec4<f32>, lid: u32, is_max: bool) -> vec4<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w {
            red[lid] = select(red[lid] + red[lid + w], max(red[lid], red[lid + w]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// x^e for x >= 0, with 0^e = 0 for e > 0 and x^0 = 1.
fn powz(x: f32, e: f32) -> f32 {
    if e == 0.0 { return 1.0; }
    if x <= 0.0 { return 0.0; }
    return pow(x, e);
}

@compute @workgroup_size(256)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let base = row * p.c;
    let label = labels[row];
    let valid = label < p.c;
    let y = min(label, p.c - 1u);
    // The logits with the true class's lowered by its margin: z_j − δ_jy·Δ_y (z where Δ = 0).
    let margin = weights[2u * p.c + y];
    var m = -3.4028234663852886e38; // the lowest f32 (a constant past it is an error in WGSL)
    for (var j = lid; j < p.c; j += 256u) {
        m = max(m, z[base + j] - select(0.0, margin, j == y));
    }
    m = reduce(vec4<f32>(m), lid, true).x;
    // e_j = e^(s·(z_j − δ_jy·Δ_y − m)), the scale applied after the max is subtracted (s = 1
    // leaves every term as it was). total: Σ_j e_j; acc.y: the same without j = y, so
    // 1 − p_y = acc.y / total keeps its precision when p_y is close to 1; acc.z: the exponents
    // Σ_j s·(z_j − δ_jy·Δ_y − m), whose mean less log(total) is mean_j log p_j.
    var acc = vec4<f32>(0.0);
    for (var j = lid; j < p.c; j += 256u) {
        let t = p.s * (z[base + j] - select(0.0, margin, j == y) - m);
        let e = exp(t);
        acc += vec4<f32>(e, select(e, 0.0, j == y), t, 0.0);
    }
    acc = reduce(acc, lid, false);
    let total = acc.x;
    let zy = p.s * (z[base + y] - margin - m);
    let py = exp(zy) / total;
    let q = acc.y / total;
    let logp = zy - log(total);
    let mean_logp = acc.z / f32(p.c) - log(total);
    // dℓ/dz_j = s·(p_j − (1−ε)·δ_jy − ε/C): at j = y, p_y − 1 = −q keeps its precision.
    let eps = weights[3u * p.c + y];
    let spread = eps / f32(p.c);
    for (var j = lid; j < p.c; j += 256u) {
        let pj = exp(p.s * (z[base + j] - m)) / total;
        let g = p.s * (select(pj, eps - q, j == y) - spread);
        gz[base + j] = select(nan(), g, valid);
    }
    if lid == 0u {
        let alpha = weights[y];
        let w = weights[p.c + y];
        var focal = 0.0;
        var fcoef = 0.0;
        if p.theta != 0.0 {
            // f = −α q^γ log p; df/dz_j = α [q^γ − γ q^(γ−1) p log p] (p_j − δ_jy). The second
            // term tends to 0 with q (log p ≈ −q), so it is left out at q = 0.
            let qg = powz(q, p.gamma);
            var second = 0.0;
            if q > 0.0 && p.gamma != 0.0 {
                second = p.gamma * pow(q, p.gamma - 1.0) * py * logp;
            }
            focal = -alpha * qg * logp;
            fcoef = alpha * (qg - second);
        }
        let ce = -(1.0 - eps) * logp - eps * mean_logp;
        let t = vec4<f32>(focal, w * ce, w, fcoef);
        terms[row] = select(vec4<f32>(nan()), t, valid);
    }
}

@compute @workgroup_size(256)
fn batch(@builtin(local_invocation_index) lid: u32) {
    var acc = vec4<f32>(0.0);
    for (var i = lid; i < p.n; i += 256u) { acc += terms_in[i]; }
    acc = reduce(acc, lid, false);
    if lid == 0u {
        let a_f = p.theta / f32(p.n);
        var a_ce = 0.0;
        var v = a_f * acc.x;
        if p.theta != 1.0 {
            a_ce = (1.0 - p.theta) / acc.z;
            v += a_ce * acc.y;
        }
        value[0] = v;
        coef[0] = a_f;
        coef[1] = a_ce;
    }
}

@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 256u;
    if k >= p.n * p.c { return; }
    let t = terms_in[k / p.c];
    grad[k] *= coef_in[0] * t.w + coef_in[1] * t.z;
}
