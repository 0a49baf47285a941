// Sums over the dimensions along which the output shape has size 1 (shapes padded to rank 4),
// one workgroup per output element; and the reverse, broadcasting back (expand).

struct P {
    n_out: u32,
    n_red: u32,
    k: f32,
    _pad: u32,
    o: vec4<u32>,   // output dims
    i: vec4<u32>,   // input dims
    r: vec4<u32>,   // reduced dims: i where o == 1, else 1
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 256>;

fn coords(idx: u32, d: vec4<u32>) -> vec4<u32> {
    let c3 = idx % d.w;
    let t3 = idx / d.w;
    let c2 = t3 % d.z;
    let t2 = t3 / d.z;
    let c1 = t2 % d.y;
    let c0 = t2 / d.y;
    return vec4<u32>(c0, c1, c2, c3);
}

fn flat(c: vec4<u32>, d: vec4<u32>) -> u32 {
    return ((c.x * d.y + c.y) * d.z + c.z) * d.w + c.w;
}

@compute @workgroup_size(256)
fn sum_to(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = wid.x + wid.y * nwg.x;
    let base = coords(min(o, p.n_out - 1u), p.o);
    var s = 0.0;
    for (var r = lid; r < p.n_red; r += 256u) {
        s += x[flat(base + coords(r, p.r), p.i)];
    }
    part[lid] = s;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    if lid == 0u && o < p.n_out { y[o] = p.k * part[0]; }
}

// y (input dims i) = x (output dims o) broadcast.
@compute @workgroup_size(256)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if idx >= p.n_red { return; }
    let c = coords(idx, p.i);
    y[idx] = p.k * x[flat(min(c, p.o - vec4<u32>(1u)), p.o)];
}
