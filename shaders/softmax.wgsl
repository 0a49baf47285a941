// Softmax / log-softmax over the last dimension of an [N, C] tensor (one workgroup per row,
// max-subtracted so exp never overflows), their backward, and gathering / scattering one
// entry per row at a label.

struct P {
    n: u32,
    c: u32,
    log: u32,   // 1: log-softmax, 0: softmax
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;

// softmax: y = softmax(x) or log_softmax(x).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// softmax_backward: from the forward output yo and gy.
@group(0) @binding(1) var<storage, read> yo: array<f32>;
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// gather: out[i] = src[i, labels[i]]; scatter: dst[i, j] = g[i] if j == labels[i] else 0.
// A label >= C gives NaN (gather) or a NaN row (scatter) instead of an out-of-bounds access.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// A quiet NaN, built at run time: a NaN constant expression is a shader-creation error in
// WGSL (browsers refuse the module; naga lets it pass).
fn nan() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let base = row * p.c;
    var m = -3.4028234663852886e38; // the lowest f32 (a constant past it is an error in WGSL)
    for (var j = lid; j < p.c; j += 256u) { m = max(m, x[base + j]); }
    m = reduce_max(m, lid);
    var s = 0.0;
    for (var j = lid; j < p.c; j += 256u) { s += exp(x[base + j] - m); }
    s = reduce_sum(s, lid);
    let ls = log(s);
    for (var j = lid; j < p.c; j += 256u) {
        let z = x[base + j] - m;
        y[base + j] = select(exp(z) / s, z - ls, p.log != 0u);
    }
}

// softmax: gx = y (gy - Σ gy·y); log-softmax: gx = gy - exp(y) Σ gy.
@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let base = row * p.c;
    var s = 0.0;
    for (var j = lid; j < p.c; j += 256u) {
        s += select(gy[base + j] * yo[base + j], gy[base + j], p.log != 0u);
    }
    s = reduce_sum(s, lid);
    for (var j = lid; j < p.c; j += 256u) {
        let v = yo[base + j];
        gx[base + j] = select(v * (gy[base + j] - s), gy[base + j] - exp(v) * s, p.log != 0u);
    }
}

@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let l = labels[i];
    out[i] = select(nan(), src[i * p.c + min(l, p.c - 1u)], l < p.c);
}

@compute @workgroup_size(256)
fn scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 256u;
    if k >= p.n * p.c { return; }
    let i = k / p.c;
    let l = labels[i];
    dst[k] = select(nan(), select(0.0, g[i], k % p.c == l), l < p.c);
}
