// G g of the one-dimensional Winograd F(4, 3) (src/ops/conv/winograd_rows.rs): for every
// (source channel ci, destination channel co, kernel row ky) of the correlation the forward
// kernel runs, the row's 3 taps g to 6 values, at u[((ci · coutp + co) · 3 + ky) · 6 ..]
// (coutp: cout rounded up to 8; zeros past cout, so a block of 8 channels reads whole vec4s).
// transposed 0: weight (co, ci, ky, kx) = w[co, ci, ky, kx] (w [cout, cin, 3, 3]);
// transposed 1 (grad_x): w[ci, co, 2 − ky, 2 − kx] (w [cin, cout, 3, 3]).

struct P { cin: u32, cout: u32, coutp: u32, transposed: u32 }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;

@compute @workgroup_size(64)
fn transform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = gid.x + gid.y * nw.x * 64u;
    if i >= p.cin * p.coutp * 3u {
        return;
    }
    let ky = i % 3u;
    let co = (i / 3u) % p.coutp;
    let ci = i / (3u * p.coutp);
    var g = vec3<f32>(0.0);
    if co < p.cout {
        if p.transposed == 0u {
            let b = ((co * p.cin + ci) * 3u + ky) * 3u;
            g = vec3<f32>(w[b], w[b + 1u], w[b + 2u]);
        } else {
            let b = ((ci * p.cout + co) * 3u + 2u - ky) * 3u;
            g = vec3<f32>(w[b + 2u], w[b + 1u], w[b]);
        }
    }
    let o = i * 6u;
    u[o] = 0.25 * g.x;
    u[o + 1u] = -(g.x + g.y + g.z) / 6.0;
    u[o + 2u] = -(g.x - g.y + g.z) / 6.0;
    u[o + 3u] = g.x / 24.0 + g.y / 12.0 + g.z / 6.0;
    u[o + 4u] = g.x / 24.0 - g.y / 12.0 + g.z / 6.0;
    u[o + 5u] = g.z;
}
