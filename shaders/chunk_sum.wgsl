// The partial sums of a grad_w split over chunks of images, added in chunk order (so results
// are deterministic): out[i] = the sum over c of partial[c · numel + i].

struct P { numel: u32, chunks: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.numel { return; }
    var s = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        s += partial[c * p.numel + i];
    }
    out[i] = s;
}
