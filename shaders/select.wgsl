// LSK selection (Li et al. 2023, eq. of the spatial selection): attn = a1·σ(z₀) + a2·σ(z₁)
// with a1, a2 [N, C, H, W] and the selection logits z [N, 2, H, W] (conv_squeeze's output),
// the sigmoid maps broadcast over channels. Fused so that neither the sigmoid maps, the
// products nor the channel slices are materialised.
//
// V is one pixel, or four adjacent pixels of a plane (`vec4<f32>`, where H·W is a multiple of
// 4): src/ops/select.rs picks the latter on CPU drivers, which load a vec4 at the cost of an
// f32. Every count in `p` is in Vs.
alias V = f32;

struct P {
    n: u32,     // N*C*H*W
    c: u32,
    hw: u32,
    np: u32,    // N*H*W
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a1: array<V>;
@group(0) @binding(2) var<storage, read> a2: array<V>;
@group(0) @binding(3) var<storage, read> z: array<V>;
@group(0) @binding(4) var<storage, read_write> y: array<V>;
@group(0) @binding(4) var<storage, read> dy: array<V>;
@group(0) @binding(5) var<storage, read_write> g1: array<V>;
@group(0) @binding(6) var<storage, read_write> g2: array<V>;
@group(0) @binding(7) var<storage, read_write> gz: array<V>;

fn sigmoid(v: V) -> V {
    return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    // z[n, 0, pixel] for element i.
    let k = 2u * (i / (p.c * p.hw)) * p.hw + i % p.hw;
    y[i] = a1[i] * sigmoid(z[k]) + a2[i] * sigmoid(z[k + p.hw]);
}

// One thread per pixel walks its channels: d a1 = dy·s₀, d a2 = dy·s₁, and
// d z_j = (Σ_c dy·a_j)·s_j·(1 − s_j) with s_j = σ(z_j).
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = gid.x + gid.y * nwg.x * 256u;
    if q >= p.np { return; }
    let ni = q / p.hw;
    let k = 2u * ni * p.hw + q % p.hw;
    let s0 = sigmoid(z[k]);
    let s1 = sigmoid(z[k + p.hw]);
    var t1 = V(0.0);
    var t2 = V(0.0);
    for (var c = 0u; c < p.c; c++) {
        let i = (ni * p.c + c) * p.hw + q % p.hw;
        let d = dy[i];
        t1 += d * a1[i];
        t2 += d * a2[i];
        g1[i] = d * s0;
        g2[i] = d * s1;
    }
    gz[k] = t1 * s0 * (1.0 - s0);
    gz[k + p.hw] = t2 * s1 * (1.0 - s1);
}
