// Row-wise L2 normalisation of an [N, F] tensor, as PyTorch's F.normalize(x, dim=1):
// y = x / d with d = max(‖x‖, ε), one workgroup per row; d is kept per row for the backward
// gx = (gy − y (y·gy)) / d where ‖x‖ > ε, and gy / ε where the norm was clamped (y = x / ε).

struct P {
    n: u32,
    f: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;

// l2norm
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> d: array<f32>;

// l2norm_backward: the forward's y and d, and gy.
@group(0) @binding(1) var<storage, read> yo: array<f32>;
@group(0) @binding(2) var<storage, read> dn: array<f32>;
@group(0) @binding(3) var<storage, read> gy: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(256)
fn l2norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let base = row * p.f;
    var s = 0.0;
    for (var j = lid; j < p.f; j += 256u) { s += x[base + j] * x[base + j]; }
    s = reduce_sum(s, lid);
    let div = max(sqrt(s), p.eps);
    for (var j = lid; j < p.f; j += 256u) { y[base + j] = x[base + j] / div; }
    if lid == 0u { d[row] = div; }
}

@compute @workgroup_size(256)
fn l2norm_backward(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let base = row * p.f;
    var s = 0.0;
    for (var j = lid; j < p.f; j += 256u) { s += yo[base + j] * gy[base + j]; }
    s = reduce_sum(s, lid);
    let div = dn[row];
    // Where the norm was clamped, y = x / ε is linear in x.
    let proj = select(0.0, s, div > p.eps);
    for (var j = lid; j < p.f; j += 256u) {
        gx[base + j] = (gy[base + j] - yo[base + j] * proj) / div;
    }
}
