// LSK spatial selection pooling over [N, C, H, W]: y[:, 0] = mean over channels,
// y[:, 1] = max over channels (first maximum on ties, as PyTorch). One thread per pixel.

struct P {
    n: u32,     // N*H*W
    c: u32,
    hw: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let ni = i / p.hw;
    let s = i % p.hw;
    let base = ni * p.c * p.hw + s;
    var sum = 0.0;
    var best = x[base];
    for (var k = 0u; k < p.c; k++) {
        let v = x[base + k * p.hw];
        sum += v;
        best = max(best, v);
    }
    y[2u * ni * p.hw + s] = sum / f32(p.c);
    y[(2u * ni + 1u) * p.hw + s] = best;
}

// gx = dy_mean / C everywhere, plus dy_max at the first channel holding the maximum.
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let ni = i / p.hw;
    let s = i % p.hw;
    let base = ni * p.c * p.hw + s;
    var arg = 0u;
    var best = x[base];
    for (var k = 1u; k < p.c; k++) {
        let v = x[base + k * p.hw];
        if v > best {
            best = v;
            arg = k;
        }
    }
    let gm = dy[2u * ni * p.hw + s] / f32(p.c);
    let gmax = dy[(2u * ni + 1u) * p.hw + s];
    for (var k = 0u; k < p.c; k++) {
        gx[base + k * p.hw] = select(gm, gm + gmax, k == arg);
    }
}
