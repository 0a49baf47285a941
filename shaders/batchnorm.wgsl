// BatchNorm2d over [N, C, H, W]: per-channel batch statistics, the normalisation (optionally
// fused with the ReLU that follows it), the running-statistics update in place, and the
// backward. Each runs in two launches over contiguous chunks of a statistic's values, one
// workgroup per (statistic, chunk), so that large maps fill the GPU:
//   training forward: stats writes each chunk's mean and variance; normalize merges its
//     statistic's chunks (every workgroup the same way, in a fixed order), normalises its
//     chunk, and the statistic's first workgroup writes the merged statistics (and, for the
//     first group's channel, updates the running statistics);
//   backward: grad_sums writes each chunk's sums of dy·xhat and dy; grad_x merges its
//     statistic's sums into the coefficients of dx and writes dx for its chunk, and the
//     channel's first workgroup writes ggamma and gbeta;
//   eval forward: apply, one thread per element, with the running statistics.
// The order of every sum depends only on the shape (deterministic).
//
// groups > 1 stacks that many independent batches along N (the BBN branches through their
// shared trunk): each (group, channel) pair is one statistic s = group * C + channel, with its
// own mean and variance over the group's N/groups samples, and the running statistics take the
// groups' in order, as that many separate calls would.
//
// With relu == 1 the forward writes y = max(bn(x), 0) and the backward passes dy only where
// y > 0, recomputing bn(x) from the x it loads anyway exactly as the forward did (`relu_cut`:
// the same operations on the same values, so the same bits) instead of loading y: the ReLU
// costs no pass, no tensor of its own and no load.
//
// Per-statistic vectors share one buffer: stat = [means | variances] and the partials
// [chunk means | chunk variances] or [sums of dy·xhat | sums of dy]; the second half starts at
// p.stride (stat, gparams = [ggamma | gbeta]) or p.parts (partials).

// V is a value or four adjacent values of a plane (`vec4<f32>`, where H·W is a multiple of 4):
// src/ops/batchnorm.rs picks the latter on CPU drivers, which load a storage buffer lane by
// lane at the same cost for a vec4 as for an f32. Every count in `p` below (n, hw, count,
// chunk) is in units of V; `values` turns one into a count of values.
alias V = f32;
alias VB = bool;
const LANES: f32 = 1.0;
const ONES: vec4<f32> = vec4<f32>(1.0, 0.0, 0.0, 0.0);
// Invocations per workgroup (but `apply`'s): 8 on CPU drivers, which run a workgroup on one
// thread and pay for every barrier of the sums' trees, else 256.
const WG: u32 = 256u;

// The number of values in `units` units of V.
fn values(units: u32) -> f32 {
    return f32(units) * LANES;
}

// The sum of v's values (v itself when V is f32: vec4(v) repeats it, ONES takes one).
fn hsum(v: V) -> f32 {
    return dot(vec4<f32>(v), ONES);
}

// v's first value.
fn first(v: V) -> f32 {
    return dot(vec4<f32>(v), vec4<f32>(1.0, 0.0, 0.0, 0.0));
}

struct P {
    n: u32,         // N*C*H*W
    c: u32,
    hw: u32,
    count: u32,     // N/groups*H*W: elements per statistic
    eps: f32,
    momentum: f32,
    training: u32,
    chunk: u32,     // values per chunk of a statistic
    chunks: u32,    // chunks per statistic
    relu: u32,
    groups: u32,    // batches stacked along N
    nb: u32,        // N/groups: samples per group
    parts: u32,     // statistics · chunks: the partials' second half
    stride: u32,    // the second half of stat and gparams
    dq: u32,        // WG % hw: a walk's step within a plane (see `next`)
    di: u32,        // (WG / hw) · C · hw + dq: its step in x's flat index
    lanes: u32,     // values per V (LANES as set by the Rust side)
    wg: u32,        // WG as set by the Rust side
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;

// stats: x in, the chunks' means and biased variances out.
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> part_out: array<f32>;

// normalize: x and the chunks' statistics in; y, the merged statistics and the running ones
// (in place) out.
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read> n_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> n_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> n_y: array<V>;
@group(0) @binding(6) var<storage, read_write> n_stat: array<f32>;
@group(0) @binding(7) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> running_var: array<f32>;

// apply (eval): y = (x - mean) / sqrt(var + eps) * gamma + beta (then max(y, 0) with relu).
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> variance: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<V>;

// grad_sums: x, the statistics, dy, gamma and beta in; per chunk, sums of dy·xhat and of dy
// out.
@group(0) @binding(2) var<storage, read> stat: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<V>;
@group(0) @binding(4) var<storage, read> s_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> s_beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> gpart_out: array<f32>;

// grad_x: the chunks' sums, the statistics, gamma, x, dy and beta in; dx, and ggamma and
// gbeta out.
@group(0) @binding(1) var<storage, read> gpart: array<f32>;
@group(0) @binding(3) var<storage, read> g_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> g_x: array<V>;
@group(0) @binding(5) var<storage, read> g_dy: array<V>;
@group(0) @binding(6) var<storage, read> g_beta: array<f32>;
@group(0) @binding(7) var<storage, read_write> gx: array<V>;
@group(0) @binding(8) var<storage, read_write> gparams: array<f32>;

var<workgroup> wg_part: array<vec2<f32>, WG>;

// Flat index of the r-th element (over the group's samples, H, W) of statistic s.
fn at(s: u32, r: u32) -> u32 {
    let n = (s / p.c) * p.nb + r / p.hw;
    return (n * p.c + s % p.c) * p.hw + r % p.hw;
}

// A walk over a statistic's values with stride WG (a workgroup's invocations): the flat
// index i of value r and its place q = r % hw in its plane, kept up to date by `next`
// without dividing per value (a vector integer division is 8 scalar ones on a CPU driver).
fn walk(st: u32, r: u32) -> vec2<u32> {
    return vec2<u32>(at(st, r), r % p.hw);
}

// The walk at value r + WG: dq further in the plane, WG / hw samples on, and one more
// sample (the next plane of the same channel) where the plane wraps.
fn next(w: vec2<u32>) -> vec2<u32> {
    let q = w.y + p.dq;
    let wraps = q >= p.hw;
    let i = w.x + p.di + select(0u, (p.c - 1u) * p.hw, wraps);
    return vec2<u32>(i, select(q, q - p.hw, wraps));
}

// The statistic of flat element i (eval: the channel).
fn stat_of(i: u32) -> u32 {
    let nc = i / p.hw;
    return (nc / (p.c * p.nb)) * p.c + nc % p.c;
}

// Sum of v over the workgroup (a fixed tree); every invocation gets the result.
fn wg_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    wg_part[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if lid < w { wg_part[lid] += wg_part[lid + w]; }
        workgroupBarrier();
    }
    let s = wg_part[0];
    workgroupBarrier();
    return s;
}

// A workgroup's chunk: its index g over all chunks, its statistic st, and the range
// [first, end) of the statistic's values it takes.
struct Chunk { g: u32, st: u32, first: u32, end: u32 }

// The workgroup's chunk; st is past the last statistic for the workgroups past the end.
fn chunk_of(wid: vec3<u32>, nwg: vec3<u32>) -> Chunk {
    let g = wid.x + wid.y * nwg.x;
    let first = (g % p.chunks) * p.chunk;
    return Chunk(g, g / p.chunks, first, min(first + p.chunk, p.count));
}

// Values in chunk j of a statistic.
fn chunk_len(j: u32) -> f32 {
    return values(min(p.chunk, p.count - j * p.chunk));
}

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = chunk_of(wid, nwg);
    let st = ch.st;
    if st >= p.c * p.groups { return; }
    // One pass of sums shifted by the chunk's first value k: the variance from
    // sum (x-k)^2 - (sum (x-k))^2 / n only cancels when the chunk's mean is many standard
    // deviations from k, unlike E[x^2] - m^2 for data far from zero.
    let k = first(x[at(st, ch.first)]);
    var s = vec2<f32>(0.0);
    var w = walk(st, ch.first + lid);
    for (var r = ch.first + lid; r < ch.end; r += WG) {
        let d = x[w.x] - V(k);
        s += vec2<f32>(hsum(d), hsum(d * d));
        w = next(w);
    }
    let t = wg_sum(lid, s);
    let n = values(ch.end - ch.first);
    if lid == 0u {
        part_out[ch.g] = k + t.x / n;
        part_out[p.parts + ch.g] = max(t.y - t.x * t.x / n, 0.0) / n;
    }
}

// Statistic st's mean and biased variance from its chunks' (count n_j, mean m_j, variance
// v_j): mean = sum n_j m_j / n, var = sum n_j (v_j + (m_j - mean)^2) / n (Chan et al.'s
// pairwise update, all at once). One chunk is its own result.
fn merged(lid: u32, st: u32) -> vec2<f32> {
    let row = st * p.chunks;
    if p.chunks == 1u { return vec2<f32>(part[row], part[p.parts + row]); }
    var s = vec2<f32>(0.0);
    for (var j = lid; j < p.chunks; j += WG) { s.x += chunk_len(j) * part[row + j]; }
    let m = wg_sum(lid, s).x / values(p.count);
    var q = vec2<f32>(0.0);
    for (var j = lid; j < p.chunks; j += WG) {
        let d = part[row + j] - m;
        q.x += chunk_len(j) * (part[p.parts + row + j] + d * d);
    }
    return vec2<f32>(m, wg_sum(lid, q).x / values(p.count));
}

// The running statistics (rm, rv) after a batch with mean m and biased variance v:
// rm = (1-mom) rm + mom m, rv = (1-mom) rv + mom v count/(count-1) (PyTorch: unbiased).
fn update_running(r: vec2<f32>, m: f32, v: f32) -> vec2<f32> {
    let n = values(p.count);
    let mom = p.momentum;
    return vec2<f32>((1.0 - mom) * r.x + mom * m, (1.0 - mom) * r.y + mom * v * n / (n - 1.0));
}

@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = chunk_of(wid, nwg);
    let st = ch.st;
    if st >= p.c * p.groups { return; }
    let ms = merged(lid, st);
    let leads = ch.first == 0u;  // the statistic's first chunk
    if leads && lid == 0u {
        n_stat[st] = ms.x;
        n_stat[p.stride + st] = ms.y;
    }
    // Channel st's running statistics take the groups' batches in order.
    if leads && st < p.c {
        var r = update_running(vec2<f32>(running_mean[st], running_var[st]), ms.x, ms.y);
        for (var gi = 1u; gi < p.groups; gi++) {
            let o = merged(lid, gi * p.c + st);
            r = update_running(r, o.x, o.y);
        }
        if lid == 0u {
            running_mean[st] = r.x;
            running_var[st] = r.y;
        }
    }
    let c = st % p.c;
    let is = inverseSqrt(ms.y + p.eps);
    let g = is * n_gamma[c];
    let b = n_beta[c];
    var w = walk(st, ch.first + lid);
    for (var r = ch.first + lid; r < ch.end; r += WG) {
        let v = (x[w.x] - V(ms.x)) * g + b;
        n_y[w.x] = select(v, max(v, V(0.0)), p.relu == 1u);
        w = next(w);
    }
}

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let c = (i / p.hw) % p.c;
    // Grouped as in normalize and relu_cut.
    let v = (x[i] - V(mean[c])) * (inverseSqrt(variance[c] + p.eps) * gamma[c]) + beta[c];
    y[i] = select(v, max(v, V(0.0)), p.relu == 1u);
}

// Where the fused ReLU (relu == 1) cut the output of x value xv: where the normalised value
// (xv - m) · g + b, computed as normalize and apply computed it (g = istd · gamma), is not
// positive.
fn relu_cut(xv: V, m: f32, g: f32, b: f32) -> VB {
    return VB(p.relu == 1u) & ((xv - V(m)) * g + b <= V(0.0));
}

@compute @workgroup_size(WG)
fn grad_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = chunk_of(wid, nwg);
    let st = ch.st;
    if st >= p.c * p.groups { return; }
    let m = stat[st];
    let is = inverseSqrt(stat[p.stride + st] + p.eps);
    let g = is * s_gamma[st % p.c];
    let b = s_beta[st % p.c];
    var s = vec2<f32>(0.0);
    var w = walk(st, ch.first + lid);
    for (var r = ch.first + lid; r < ch.end; r += WG) {
        let k = w.x;
        let xv = x[k];
        // dy, zero where the fused ReLU cut the output.
        let d = select(dy[k], V(0.0), relu_cut(xv, m, g, b));
        s += vec2<f32>(hsum(d * ((xv - V(m)) * is)), hsum(d));
        w = next(w);
    }
    let t = wg_sum(lid, s);
    if lid == 0u {
        gpart_out[ch.g] = t.x;
        gpart_out[p.parts + ch.g] = t.y;
    }
}

// Statistic st's sums of dy·xhat and dy over its chunks.
fn chunk_sums(lid: u32, st: u32) -> vec2<f32> {
    let row = st * p.chunks;
    var s = vec2<f32>(0.0);
    for (var j = lid; j < p.chunks; j += WG) {
        s += vec2<f32>(gpart[row + j], gpart[p.parts + row + j]);
    }
    return wg_sum(lid, s);
}

// dx = k (dy - a - (x - mean) s) with, in training, k = gamma·istd, a = gbeta / n and
// s = istd·ggamma / n from the statistic's sums; in eval a = s = 0. The channel's first
// workgroup also writes ggamma and gbeta, summed over the groups.
@compute @workgroup_size(WG)
fn grad_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = chunk_of(wid, nwg);
    let st = ch.st;
    if st >= p.c * p.groups { return; }
    let t = chunk_sums(lid, st);
    if ch.first == 0u && st < p.c {
        var total = t;
        for (var gi = 1u; gi < p.groups; gi++) { total += chunk_sums(lid, gi * p.c + st); }
        if lid == 0u {
            gparams[st] = total.x;
            gparams[p.stride + st] = total.y;
        }
    }
    let c = st % p.c;
    let m = stat[st];
    let is = inverseSqrt(stat[p.stride + st] + p.eps);
    let n = values(p.count);
    let train = p.training != 0u;
    let k = g_gamma[c] * is;
    let b = g_beta[c];
    let a = select(0.0, t.y / n, train);
    let s = select(0.0, is * t.x / n, train);
    var w = walk(st, ch.first + lid);
    for (var r = ch.first + lid; r < ch.end; r += WG) {
        let i = w.x;
        let xv = g_x[i];
        let d = select(g_dy[i], V(0.0), relu_cut(xv, m, k, b));
        gx[i] = k * (d - V(a) - (xv - V(m)) * s);
        w = next(w);
    }
}
