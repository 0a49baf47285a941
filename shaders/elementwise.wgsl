// Binary ops with broadcasting (the same-shape maps are in elementwise_map.wgsl).
// Broadcasting works on shapes padded to rank 4: an input's stride is 0 along the
// dimensions where it has size 1.

struct P {
    n: u32,
    op: u32,
    k: f32,
    _pad: u32,
    d: vec4<u32>,   // output dims
    sa: vec4<u32>,  // strides of a (0 where broadcast)
    sb: vec4<u32>,  // strides of b
}

@group(0) @binding(0) var<uniform> p: P;

// Binary: y = a op b with broadcasting (op 4: relu(a + b)).
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let i3 = i % p.d.w;
    let r3 = i / p.d.w;
    let i2 = r3 % p.d.z;
    let r2 = r3 / p.d.z;
    let c = vec4<u32>(r2 / p.d.y, r2 % p.d.y, i2, i3);
    let va = a[dot(c, p.sa)];
    let vb = b[dot(c, p.sb)];
    var r: f32;
    switch p.op {
        case 0u: { r = va + vb; }
        case 1u: { r = va - vb; }
        case 2u: { r = va * vb; }
        case 3u: { r = va / vb; }
        default: { r = max(va + vb, 0.0); }
    }
    y[i] = r;
}
