// The gradient of a stride-2 convolution's output spread back onto its input's grid:
// u[n, c, 2·oy, 2·ox] = gy[n, c, oy, ox], zero elsewhere (u [N, C, H, W], gy [N, C, Ho, Wo],
// Ho = ceil(H / 2), Wo = W / 2). grad_x of a stride-2, padding-1 3×3 convolution is then the
// stride-1 correlation of u with the transposed, flipped kernel (src/ops/conv/subgroup_rows.rs).
// W a multiple of 4: an invocation writes 4 columns of u from 2 of gy.

struct P { rows: u32, h: u32, quads: u32, ho: u32 }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> gy: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> u: array<vec4<f32>>;

@compute @workgroup_size(64)
fn spread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.rows * p.quads { return; }
    // i: quad q of row iy of plane nc (rows = N·C·H).
    let q = i % p.quads;
    let row = i / p.quads;
    let iy = row % p.h;
    let nc = row / p.h;
    var out = vec4<f32>(0.0);
    if iy % 2u == 0u {
        let g = gy[(nc * p.ho + iy / 2u) * p.quads + q];
        out = vec4<f32>(g.x, 0.0, g.y, 0.0);
    }
    u[i] = out;
}
