// Running training statistics kept on the GPU, so a step needs no readback:
// acc[0] += k · loss, acc[1] += k · (number of rows whose argmax equals the label), acc[2] += k · rows.

struct P {
    rows: u32,
    cols: u32,
    k: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;

@group(0) @binding(1) var<storage, read> loss: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc_loss: array<f32>;

var<workgroup> hits: array<u32, 256>;

@compute @workgroup_size(256)
fn count_correct(@builtin(local_invocation_index) lid: u32) {
    var h = 0u;
    for (var r = lid; r < p.rows; r += 256u) {
        var best = 0u;
        var bv = logits[r * p.cols];
        for (var c = 1u; c < p.cols; c++) {
            let v = logits[r * p.cols + c];
            if v > bv { bv = v; best = c; }
        }
        h += select(0u, 1u, best == labels[r]);
    }
    hits[lid] = h;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { hits[lid] += hits[lid + w]; }
        workgroupBarrier();
    }
    if lid == 0u {
        acc[1] += p.k * f32(hits[0]);
        acc[2] += p.k * f32(p.rows);
    }
}

@compute @workgroup_size(1)
fn accumulate_loss() {
    acc_loss[0] += p.k * loss[0];
}
