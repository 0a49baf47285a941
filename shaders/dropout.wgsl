// Inverted dropout (PyTorch's F.dropout in training): y = x·m / (1 − p) with m ~ Bernoulli(1 − p)
// per element. The mask is not stored: it is a counter-based hash of (seed, element index), so
// the backward, which is the same map applied to gy (gx = gy·m / (1 − p)), recomputes it from
// the seed, and a run is reproducible from its seeds. src/reference/dropout.rs is the same hash
// on the CPU.

struct P {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    // Element i is dropped when the top 24 bits of its hash are below this: round(p·2^24).
    threshold: u32,
    scale: f32,   // 1 / (1 − p), 0 where p = 1
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// lowbias32, a 32-bit integer finaliser (C. Wellons, "Prospecting for Hash Functions", 2018;
// github.com/skeeto/hash-prospector): every input bit flips each output bit with probability
// ≈ 1/2.
fn mix(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

// The mask bit of element i: a key from both seed words, then two rounds over the index.
fn keep(i: u32) -> bool {
    let key = mix(p.seed_lo ^ mix(p.seed_hi ^ 0x9e3779b9u));
    let h = mix(mix(i ^ key) + key);
    return (h >> 8u) >= p.threshold;
}

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    y[i] = select(0.0, x[i] * p.scale, keep(i));
}
