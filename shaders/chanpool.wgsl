// LSK spatial selection pooling: y[:, 0] = mean and y[:, 1] = max over the channels of
// cat(a, b) along channels, [N, Ca + Cb, H, W] -> [N, 2, H, W], without building the
// concatenation (Cb = 0: over a alone). First maximum on ties, as PyTorch. One thread per
// pixel. The backward adds ga_in and gb_in (what a and b got from their other consumers, the
// LSK selection) to ga and gb when asked, in the same store.

// V is one pixel, or four adjacent pixels of a plane (`vec4<f32>`, where H·W is a multiple of
// 4; VU the matching channel index): src/ops/chanpool.rs picks the latter on CPU drivers,
// which load a vec4 at the cost of an f32. n and hw in `p` count Vs.
alias V = f32;
alias VU = u32;

struct P {
    n: u32,     // N*H*W
    ca: u32,
    cb: u32,
    hw: u32,
    add_a: u32, // backward: add ga_in to ga (else ga_in is bound to a and not read)
    add_b: u32, // and gb_in to gb
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<V>;
@group(0) @binding(2) var<storage, read> b: array<V>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;
@group(0) @binding(3) var<storage, read> dy: array<V>;
@group(0) @binding(4) var<storage, read> ga_in: array<V>;
@group(0) @binding(5) var<storage, read> gb_in: array<V>;
@group(0) @binding(6) var<storage, read_write> ga: array<V>;
@group(0) @binding(7) var<storage, read_write> gb: array<V>;

// Channel k of cat(a, b) at pixel s of sample ni.
fn at(ni: u32, k: u32, s: u32) -> V {
    if k < p.ca {
        return a[(ni * p.ca + k) * p.hw + s];
    }
    return b[(ni * p.cb + k - p.ca) * p.hw + s];
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let ni = i / p.hw;
    let s = i % p.hw;
    let c = p.ca + p.cb;
    var sum = V(0.0);
    var best = at(ni, 0u, s);
    for (var k = 0u; k < c; k++) {
        let v = at(ni, k, s);
        sum += v;
        best = max(best, v);
    }
    y[2u * ni * p.hw + s] = sum / f32(c);
    y[(2u * ni + 1u) * p.hw + s] = best;
}

// g = dy_mean / C everywhere, plus dy_max at the first channel holding the maximum.
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let ni = i / p.hw;
    let s = i % p.hw;
    let c = p.ca + p.cb;
    var arg = VU(0u);
    var best = at(ni, 0u, s);
    for (var k = 1u; k < c; k++) {
        let v = at(ni, k, s);
        let more = v > best;
        best = select(best, v, more);
        arg = select(arg, VU(k), more);
    }
    let gm = dy[2u * ni * p.hw + s] / f32(c);
    let gmax = dy[(2u * ni + 1u) * p.hw + s];
    for (var k = 0u; k < p.ca; k++) {
        let at = (ni * p.ca + k) * p.hw + s;
        var g = select(gm, gm + gmax, VU(k) == arg);
        if p.add_a == 1u { g += ga_in[at]; }
        ga[at] = g;
    }
    for (var k = 0u; k < p.cb; k++) {
        let at = (ni * p.cb + k) * p.hw + s;
        var g = select(gm, gm + gmax, VU(k + p.ca) == arg);
        if p.add_b == 1u { g += gb_in[at]; }
        gb[at] = g;
    }
}
