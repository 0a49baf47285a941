// Same-shape elementwise maps: binary ops, the LSK block's residual join, unary maps, their
// backward kernels and accumulation. V is one value, or four adjacent values (`vec4<f32>`)
// where the tensors hold a multiple of 4 values: src/ops/elementwise.rs picks the latter on
// CPU drivers, which load a storage buffer lane by lane at the same cost for a vec4 as for an
// f32. p.n counts Vs.
alias V = f32;

struct P {
    n: u32,
    op: u32,
    k: f32,
    _pad: u32,
    // (the broadcasting shape fields of elementwise.wgsl's P, unused here)
    d: vec4<u32>,
    sa: vec4<u32>,
    sb: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: P;

// binary_same: y = a op b (op 4: relu(a + b)).
@group(0) @binding(1) var<storage, read> a: array<V>;
@group(0) @binding(2) var<storage, read> b: array<V>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;

// Mul backward: ga = gy * b, gb = gy * a in one pass.
@group(0) @binding(3) var<storage, read> mul_gy: array<V>;
@group(0) @binding(4) var<storage, read_write> ga: array<V>;
@group(0) @binding(5) var<storage, read_write> gb: array<V>;

// Unary: out = f(x); backward: gx = f'(y) * gy.
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> out: array<V>;
@group(0) @binding(2) var<storage, read> gy: array<V>;
@group(0) @binding(3) var<storage, read_write> gx: array<V>;

// The LSK block's residual join y = relu(a·b + c): forward reads a, b and join_c, writes
// join_y; backward reads a, b, the output as join_out and its gradient join_gy, and writes
// with m = gy·[y > 0]: ga = m·b, gb = m·a, gc = m.
@group(0) @binding(3) var<storage, read> join_c: array<V>;
@group(0) @binding(4) var<storage, read_write> join_y: array<V>;
@group(0) @binding(3) var<storage, read> join_out: array<V>;
@group(0) @binding(4) var<storage, read> join_gy: array<V>;
@group(0) @binding(5) var<storage, read_write> join_ga: array<V>;
@group(0) @binding(6) var<storage, read_write> join_gb: array<V>;
@group(0) @binding(7) var<storage, read_write> join_gc: array<V>;

// Accumulate: acc += g.
@group(0) @binding(1) var<storage, read> g: array<V>;
@group(0) @binding(2) var<storage, read_write> acc: array<V>;

const ZERO: V = V(0.0);

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn binary_same(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let va = a[i];
    let vb = b[i];
    var r: V;
    switch p.op {
        case 0u: { r = va + vb; }
        case 1u: { r = va - vb; }
        case 2u: { r = va * vb; }
        case 3u: { r = va / vb; }
        default: { r = max(va + vb, ZERO); }
    }
    y[i] = r;
}

@compute @workgroup_size(256)
fn mul_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let d = mul_gy[i];
    ga[i] = d * b[i];
    gb[i] = d * a[i];
}

@compute @workgroup_size(256)
fn mul_add_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    join_y[i] = max(a[i] * b[i] + join_c[i], ZERO);
}

@compute @workgroup_size(256)
fn mul_add_relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let m = select(ZERO, join_gy[i], join_out[i] > ZERO);
    join_ga[i] = m * b[i];
    join_gb[i] = m * a[i];
    join_gc[i] = m;
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let v = x[i];
    var r: V;
    switch p.op {
        case 0u: { r = max(v, ZERO); }
        // Stable logistic: never exponentiates a positive number.
        case 1u: { let e = exp(-abs(v)); r = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= ZERO); }
        case 2u: { r = exp(v); }
        case 3u: { r = log(v); }
        default: { r = p.k * v; }
    }
    out[i] = r;
}

// op 0: relu backward from its output y (y > 0 exactly where x > 0); op 1: sigmoid backward
// from its output y. Both are bound as x.
@compute @workgroup_size(256)
fn unary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let v = x[i];
    var d: V;
    switch p.op {
        case 0u: { d = select(ZERO, V(1.0), v > ZERO); }
        default: { d = v * (1.0 - v); }
    }
    gx[i] = d * gy[i];
}

@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    acc[i] = acc[i] + g[i];
}
