// Elementwise ops: broadcasting binary ops, unary maps and their backward kernels.
// Broadcasting works on shapes padded to rank 4: an input's stride is 0 along the
// dimensions where it has size 1.

struct P {
    n: u32,
    op: u32,
    k: f32,
    _pad: u32,
    d: vec4<u32>,   // output dims
    sa: vec4<u32>,  // strides of a (0 where broadcast)
    sb: vec4<u32>,  // strides of b
}

@group(0) @binding(0) var<uniform> p: P;

// Binary: y = a op b with broadcasting (op 4: relu(a + b)).
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Mul backward for same-shape operands: ga = gy * b, gb = gy * a in one pass.
@group(0) @binding(3) var<storage, read> mul_gy: array<f32>;
@group(0) @binding(4) var<storage, read_write> ga: array<f32>;
@group(0) @binding(5) var<storage, read_write> gb: array<f32>;

// Unary: out = f(x); backward: gx = f'(y) * gy.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// The LSK block's residual join y = relu(a·b + c) (same shapes): forward reads a, b and
// join_c, writes join_y; backward reads a, b, the output as join_out and its gradient
// join_gy, and writes with m = gy·[y > 0]: ga = m·b, gb = m·a, gc = m.
@group(0) @binding(3) var<storage, read> join_c: array<f32>;
@group(0) @binding(4) var<storage, read_write> join_y: array<f32>;
@group(0) @binding(3) var<storage, read> join_out: array<f32>;
@group(0) @binding(4) var<storage, read> join_gy: array<f32>;
@group(0) @binding(5) var<storage, read_write> join_ga: array<f32>;
@group(0) @binding(6) var<storage, read_write> join_gb: array<f32>;
@group(0) @binding(7) var<storage, read_write> join_gc: array<f32>;

// Accumulate: acc += g.
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let i3 = i % p.d.w;
    let r3 = i / p.d.w;
    let i2 = r3 % p.d.z;
    let r2 = r3 / p.d.z;
    let c = vec4<u32>(r2 / p.d.y, r2 % p.d.y, i2, i3);
    let va = a[dot(c, p.sa)];
    let vb = b[dot(c, p.sb)];
    var r: f32;
    switch p.op {
        case 0u: { r = va + vb; }
        case 1u: { r = va - vb; }
        case 2u: { r = va * vb; }
        case 3u: { r = va / vb; }
        default: { r = max(va + vb, 0.0); }
    }
    y[i] = r;
}

// binary4: the same ops on four values at a time where a, b and y have one shape of a
// multiple of 4 values (p.n counts vec4s): CPU drivers load a storage buffer lane by lane, a
// vec4 as fast as an f32.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn binary4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let va = a4[i];
    let vb = b4[i];
    var r: vec4<f32>;
    switch p.op {
        case 0u: { r = va + vb; }
        case 1u: { r = va - vb; }
        case 2u: { r = va * vb; }
        case 3u: { r = va / vb; }
        default: { r = max(va + vb, vec4<f32>(0.0)); }
    }
    y4[i] = r;
}

@compute @workgroup_size(256)
fn mul_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let g = mul_gy[i];
    ga[i] = g * b[i];
    gb[i] = g * a[i];
}

@compute @workgroup_size(256)
fn mul_add_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    join_y[i] = max(a[i] * b[i] + join_c[i], 0.0);
}

@compute @workgroup_size(256)
fn mul_add_relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let m = select(0.0, join_gy[i], join_out[i] > 0.0);
    join_ga[i] = m * b[i];
    join_gb[i] = m * a[i];
    join_gc[i] = m;
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let v = x[i];
    var r: f32;
    switch p.op {
        case 0u: { r = max(v, 0.0); }
        // Stable logistic: never exponentiates a positive number.
        case 1u: { let e = exp(-abs(v)); r = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0); }
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
    var d: f32;
    switch p.op {
        case 0u: { d = select(0.0, 1.0, v > 0.0); }
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
