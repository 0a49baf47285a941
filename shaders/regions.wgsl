// BiFormer's regions (Zhu et al., CVPR 2023, `BiLevelRoutingAttention`): an [N, C, H, W] map
// cut into a g×g grid of regions of rh×rw pixels (region ρ = j·g + i, pixel p = h·rw + w, as
// their rearrange 'n c (j h) (i w) -> n (j i) (h w) c'), its C channels as `heads` heads of
// c = C / heads.
//
// gather:   out[((n·R + r)·heads + m)·(k·w2) + j·w2 + p, ch] = x[n, m·c + ch, pixel p of region
//           idx[n, r, j]], R = g², w2 = rh·rw: for every region r the pixels of its k routed
//           regions, head by head (their KVGather; k = 1 and idx[n, r, 0] = r lays out the
//           queries).
// invert:   inv[n, ρ, r] = the j with idx[n, r, j] = ρ, or NONE: which gathered block of
//           region r, if any, holds region ρ (a region's k routes are distinct, as top-k's).
// scatter:  its transpose: every x element gathers the out entries that read it (no atomics),
//           one inverse entry per region r, or, for the identity routing, its one entry.
// means:    the region means of x, [N, R, C] (their q.mean([2, 3]): the router's input).
// route:    per region r of image n, the k regions ρ of largest (scale·q̄_r)·k̄_ρ, largest
//           first, ties to the lower index (their TopkRouting: torch.topk of the affinity).

struct P {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    g: u32,      // regions per side
    heads: u32,
    k: u32,      // routed regions per region
    scale: f32,
    own: u32,    // 1: idx is every region's own (k = 1), so scatter need not search it
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;

// gather: x, idx -> out.   scatter: out (read as y), inv (bound as idx) -> x (written as gx).
// invert: routes -> inv.   means: x -> mean_out.   route: q̄ (qm), k̄ (km) -> idx (as top).
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;

@group(0) @binding(1) var<storage, read> routes: array<u32>;
@group(0) @binding(2) var<storage, read_write> inv: array<u32>;

// No route: an inverse entry of a region that does not route to the region.
const NONE: u32 = 0xffffffffu;

@group(0) @binding(1) var<storage, read> qm: array<f32>;
@group(0) @binding(2) var<storage, read> km: array<f32>;
@group(0) @binding(3) var<storage, read_write> top: array<u32>;

const MAX_K: u32 = 16u;

fn gid_of(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

// The offset of pixel `pix` of region `rho` in one channel plane.
fn pixel(rho: u32, pix: u32) -> u32 {
    let rh = p.h / p.g;
    let rw = p.w / p.g;
    let y = (rho / p.g) * rh + pix / rw;
    let x = (rho % p.g) * rw + pix % rw;
    return y * p.w + x;
}

@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid_of(id, nwg);
    let regions = p.g * p.g;
    let w2 = (p.h / p.g) * (p.w / p.g);
    let cw = p.c / p.heads;
    let total = p.n * regions * p.heads * p.k * w2 * cw;
    if i >= total { return; }
    let ch = i % cw;
    var rest = i / cw;
    let pix = rest % w2;
    rest /= w2;
    let j = rest % p.k;
    rest /= p.k;
    let m = rest % p.heads;
    let nr = rest / p.heads;
    let n = nr / regions;
    let rho = idx[nr * p.k + j];
    dst[i] = src[(n * p.c + m * cw + ch) * p.h * p.w + pixel(rho, pix)];
}

@compute @workgroup_size(256)
fn scatter(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid_of(id, nwg);
    let hw = p.h * p.w;
    if i >= p.n * p.c * hw { return; }
    let regions = p.g * p.g;
    let rh = p.h / p.g;
    let rw = p.w / p.g;
    let w2 = rh * rw;
    let cw = p.c / p.heads;
    let yx = i % hw;
    let nc = i / hw;
    let c = nc % p.c;
    let n = nc / p.c;
    let y = yx / p.w;
    let x = yx % p.w;
    let rho = (y / rh) * p.g + x / rw;
    let pix = (y % rh) * rw + x % rw;
    let m = c / cw;
    let ch = c % cw;
    if p.own == 1u {
        let nr = n * regions + rho;
        dst[i] = src[((nr * p.heads + m) * w2 + pix) * cw + ch];
        return;
    }
    var acc = 0.0;
    let row = (n * regions + rho) * regions;
    for (var r = 0u; r < regions; r++) {
        let j = idx[row + r];
        if j != NONE {
            let nr = n * regions + r;
            acc += src[(((nr * p.heads + m) * p.k + j) * w2 + pix) * cw + ch];
        }
    }
    dst[i] = acc;
}

@compute @workgroup_size(256)
fn invert(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid_of(id, nwg);
    let regions = p.g * p.g;
    if i >= p.n * regions * regions { return; }
    let r = i % regions;
    let rho = (i / regions) % regions;
    let n = i / (regions * regions);
    var found = NONE;
    for (var j = 0u; j < p.k; j++) {
        if routes[(n * regions + r) * p.k + j] == rho { found = j; }
    }
    inv[i] = found;
}

@compute @workgroup_size(256)
fn means(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid_of(id, nwg);
    let regions = p.g * p.g;
    if i >= p.n * regions * p.c { return; }
    let c = i % p.c;
    let nr = i / p.c;
    let n = nr / regions;
    let rho = nr % regions;
    let w2 = (p.h / p.g) * (p.w / p.g);
    let base = (n * p.c + c) * p.h * p.w;
    var s = 0.0;
    for (var pix = 0u; pix < w2; pix++) { s += src[base + pixel(rho, pix)]; }
    mean_out[i] = s / f32(w2);
}

@compute @workgroup_size(256)
fn route(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid_of(id, nwg);
    let regions = p.g * p.g;
    if i >= p.n * regions { return; }
    let n = i / regions;
    var best: array<f32, MAX_K>;
    var arg: array<u32, MAX_K>;
    var kept = 0u;
    for (var rho = 0u; rho < regions; rho++) {
        var a = 0.0;
        for (var c = 0u; c < p.c; c++) {
            a += (p.scale * qm[i * p.c + c]) * km[(n * regions + rho) * p.c + c];
        }
        // Insert into the sorted list (largest first); equal values keep the earlier region.
        var at = kept;
        while at > 0u && best[at - 1u] < a { at -= 1u; }
        if at >= p.k { continue; }
        var e = min(kept, p.k - 1u);
        while e > at {
            best[e] = best[e - 1u];
            arg[e] = arg[e - 1u];
            e -= 1u;
        }
        best[at] = a;
        arg[at] = rho;
        kept = min(kept + 1u, p.k);
    }
    for (var j = 0u; j < p.k; j++) { top[i * p.k + j] = arg[j]; }
}
