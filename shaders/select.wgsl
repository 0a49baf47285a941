// LSK selection (Li et al. 2023, eq. of the spatial selection): attn = a1·s[:, 0] + a2·s[:, 1]
// with a1, a2 [N, C, H, W] and the selection maps s [N, 2, H, W] broadcast over channels,
// fused so that neither the products nor the channel slices of s are materialised.

struct P {
    n: u32,     // N*C*H*W
    c: u32,
    hw: u32,
    np: u32,    // N*H*W
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a1: array<f32>;
@group(0) @binding(2) var<storage, read> a2: array<f32>;
@group(0) @binding(3) var<storage, read> s: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> g1: array<f32>;
@group(0) @binding(6) var<storage, read_write> g2: array<f32>;

// Offset of s[n, 0, pixel] for element i of an [N, C, H, W] tensor.
fn sel(i: u32) -> u32 {
    let per = p.c * p.hw;
    return 2u * (i / per) * p.hw + i % p.hw;
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let k = sel(i);
    y[i] = a1[i] * s[k] + a2[i] * s[k + p.hw];
}

// d a1 = dy·s0, d a2 = dy·s1 (one thread per element).
@compute @workgroup_size(256)
fn backward_inputs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let k = sel(i);
    g1[i] = dy[i] * s[k];
    g2[i] = dy[i] * s[k + p.hw];
}

// d s0 = Σ_c dy·a1, d s1 = Σ_c dy·a2 (one thread per pixel; g1 holds d s here).
@compute @workgroup_size(256)
fn backward_select(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = gid.x + gid.y * nwg.x * 256u;
    if q >= p.np { return; }
    let ni = q / p.hw;
    let px = q % p.hw;
    var t1 = 0.0;
    var t2 = 0.0;
    for (var c = 0u; c < p.c; c++) {
        let i = (ni * p.c + c) * p.hw + px;
        t1 += dy[i] * a1[i];
        t2 += dy[i] * a2[i];
    }
    g1[2u * ni * p.hw + px] = t1;
    g1[(2u * ni + 1u) * p.hw + px] = t2;
}
