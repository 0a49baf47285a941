// Tiled matrix product C[M,N] = op(A)[M,K] · op(B)[K,N] (+ bias[N] per row), where op
// transposes when the flag is set: A is stored [M,K] or, transposed, [K,M]; B is stored
// [K,N] or, transposed, [N,K]. Each 16x16 workgroup stages 16x16 tiles of A and B in
// workgroup memory; loads past the edges read as zero, so any M, N, K works.

struct P {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    has_bias: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const T: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

fn load_a(i: u32, kk: u32) -> f32 {
    if i >= p.m || kk >= p.k { return 0.0; }
    if p.trans_a != 0u { return a[kk * p.m + i]; }
    return a[i * p.k + kk];
}

fn load_b(kk: u32, j: u32) -> f32 {
    if kk >= p.k || j >= p.n { return 0.0; }
    if p.trans_b != 0u { return b[j * p.k + kk]; }
    return b[kk * p.n + j];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * T + lid.y;
    let col = wid.x * T + lid.x;
    var acc = 0.0;
    for (var t = 0u; t < p.k; t += T) {
        ta[lid.y][lid.x] = load_a(row, t + lid.x);
        tb[lid.y][lid.x] = load_b(t + lid.y, col);
        workgroupBarrier();
        for (var q = 0u; q < T; q++) {
            acc += ta[lid.y][q] * tb[q][lid.x];
        }
        workgroupBarrier();
    }
    if row < p.m && col < p.n {
        if p.has_bias != 0u { acc += bias[col]; }
        c[row * p.n + col] = acc;
    }
}
