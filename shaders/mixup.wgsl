// Mixup of a batch (Zhang et al. 2018, as MiSLAS's `mixup_data` does it): with x [N, D]
// (each sample flattened to D values), a permutation `perm` of the batch and λ,
//   out[i, k] = λ·x[i, k] + (1 − λ)·x[perm[i], k].
// One invocation per output value. There is no backward: the input is data.

struct P {
    n: u32,
    d: u32,
    lambda: f32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn mix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 256u;
    if k >= p.n * p.d { return; }
    let i = k / p.d;
    let other = perm[i] * p.d + (k - i * p.d);
    out[k] = p.lambda * x[k] + (1.0 - p.lambda) * x[other];
}
