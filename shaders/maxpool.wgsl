// 2-D max pooling as PyTorch's F.max_pool2d (square window k, stride s, padding pad,
// ceil_mode=false, dilation 1): padding counts as −∞, so it never wins, and PyTorch's
// pad <= k/2 leaves every window at least one input element. The forward writes each output's
// maximum and the index iy·W + ix of the first element holding it (row-major order, strict >:
// ties go to the first index, as PyTorch's CPU and CUDA kernels). The backward gathers without
// atomics: one thread per input element visits the outputs whose windows can contain it and
// adds their gradients where the stored index names it.

struct P {
    n: u32,   // threads: N·C·OH·OW (forward) or N·C·H·W (backward)
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    s: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;

// forward
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;

// backward: the forward's indices and gy.
@group(0) @binding(1) var<storage, read> arg: array<u32>;
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * 256u;
    if o >= p.n { return; }
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let plane = o / (p.ow * p.oh);
    let base = plane * p.h * p.w;
    // The window clipped to the input: rows [y0, y1), columns [x0, x1) (as signed values, the
    // padded start may be negative).
    let sy = i32(oy * p.s) - i32(p.pad);
    let sx = i32(ox * p.s) - i32(p.pad);
    let y0 = u32(max(sy, 0));
    let x0 = u32(max(sx, 0));
    let y1 = u32(min(sy + i32(p.k), i32(p.h)));
    let x1 = u32(min(sx + i32(p.k), i32(p.w)));
    var best_at = y0 * p.w + x0;
    var best = x[base + best_at];
    for (var iy = y0; iy < y1; iy++) {
        for (var ix = x0; ix < x1; ix++) {
            let at = iy * p.w + ix;
            let v = x[base + at];
            if v > best {
                best = v;
                best_at = at;
            }
        }
    }
    y[o] = best;
    idx[o] = best_at;
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let plane = i / (p.w * p.h);
    let at = iy * p.w + ix;
    // Outputs o whose window o·s − pad .. o·s − pad + k − 1 holds row iy:
    // ceil((iy + pad − k + 1) / s) <= o <= floor((iy + pad) / s), within [0, OH).
    let oy0 = u32(max(i32(iy + p.pad + 1u) - i32(p.k) + i32(p.s) - 1, 0)) / p.s;
    let oy1 = min((iy + p.pad) / p.s + 1u, p.oh);
    let ox0 = u32(max(i32(ix + p.pad + 1u) - i32(p.k) + i32(p.s) - 1, 0)) / p.s;
    let ox1 = min((ix + p.pad) / p.s + 1u, p.ow);
    let obase = plane * p.oh * p.ow;
    var g = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        for (var ox = ox0; ox < ox1; ox++) {
            let o = obase + oy * p.ow + ox;
            if arg[o] == at { g += gy[o]; }
        }
    }
    gx[i] = g;
}
