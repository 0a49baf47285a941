// Sums and maxima over a workgroup of 256 invocations (one row of a row-wise kernel: softmax,
// row normalisation), by a tree in workgroup memory. Prepended to the kernels that use it
// (`src/ops/softmax.rs`, `src/ops/normalize.rs`); every invocation of the workgroup must call.

var<workgroup> red: array<f32, 256>;

fn reduce_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { red[lid] = max(red[lid], red[lid + w]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { red[lid] += red[lid + w]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

