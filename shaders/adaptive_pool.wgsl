// Adaptive average pooling as PyTorch's F.adaptive_avg_pool2d to (OH, OW): output i of an axis
// of length L averages the bin [floor(i·L/O), ceil((i+1)·L/O)) (aten/src/ATen/native/
// AdaptiveAveragePooling.cpp, start_index / end_index), so bins may overlap, and with O > L
// an element feeds several outputs (VGG's 7×7 pool of a 1×1 map copies it). One thread per
// output forward; the backward gathers, one thread per input element summing gy / bin size over
// the outputs whose bins hold it, with no atomics.

struct P {
    n: u32,   // threads: N·C·OH·OW (forward) or N·C·H·W (backward)
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;

// forward
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// backward
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx: array<f32>;

fn bin_start(i: u32, len: u32, out: u32) -> u32 {
    return i * len / out;
}

fn bin_end(i: u32, len: u32, out: u32) -> u32 {
    return ((i + 1u) * len + out - 1u) / out;
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * 256u;
    if o >= p.n { return; }
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let base = (o / (p.ow * p.oh)) * p.h * p.w;
    let y0 = bin_start(oy, p.h, p.oh);
    let y1 = bin_end(oy, p.h, p.oh);
    let x0 = bin_start(ox, p.w, p.ow);
    let x1 = bin_end(ox, p.w, p.ow);
    var s = 0.0;
    for (var iy = y0; iy < y1; iy++) {
        for (var ix = x0; ix < x1; ix++) { s += x[base + iy * p.w + ix]; }
    }
    y[o] = s / f32((y1 - y0) * (x1 - x0));
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let obase = (i / (p.w * p.h)) * p.oh * p.ow;
    // Bins holding row iy: start(o) <= iy ⟺ o·H < (iy+1)·OH, and end(o) > iy ⟺
    // (o+1)·H > iy·OH, so floor(iy·OH/H) <= o < ceil((iy+1)·OH/H).
    let oy0 = iy * p.oh / p.h;
    let oy1 = ((iy + 1u) * p.oh + p.h - 1u) / p.h;
    let ox0 = ix * p.ow / p.w;
    let ox1 = ((ix + 1u) * p.ow + p.w - 1u) / p.w;
    var g = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        let rows = bin_end(oy, p.h, p.oh) - bin_start(oy, p.h, p.oh);
        for (var ox = ox0; ox < ox1; ox++) {
            let cols = bin_end(ox, p.w, p.ow) - bin_start(ox, p.w, p.ow);
            g += gy[obase + oy * p.ow + ox] / f32(rows * cols);
        }
    }
    gx[i] = g;
}
