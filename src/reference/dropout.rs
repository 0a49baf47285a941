//! CPU reference of the dropout mask of `shaders/dropout.wgsl`: the same counter-based hash of
//! (seed, element index), so a test can check the GPU's mask bit for bit.

/// lowbias32 (C. Wellons, hash-prospector), as the shader's `mix`.
fn mix(v: u32) -> u32 {
    let mut h = v;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// Whether element `i` is kept under `seed` when elements whose 24-bit hash is below
/// `threshold` (round(p·2^24)) are dropped.
pub fn keep(seed: u64, threshold: u32, i: u32) -> bool {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    let key = mix(lo ^ mix(hi ^ 0x9e37_79b9));
    let h = mix(mix(i ^ key).wrapping_add(key));
    (h >> 8) >= threshold
}
