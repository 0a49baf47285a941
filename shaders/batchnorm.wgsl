// BatchNorm2d over [N, C, H, W]: per-channel batch statistics, the normalisation (optionally
// fused with the ReLU that follows it), the running-statistics update in place, and the
// backward (per-channel sums, then an elementwise pass for dx). The per-channel reductions run
// in two stages so that large maps fill the GPU: stats / grad_sums give each workgroup one
// contiguous chunk of one channel's N*H*W values and write one result per (channel, chunk);
// stats_merge / grad_merge combine a channel's chunks in one workgroup. With one chunk per
// channel (and one group) stats writes the final values. The order of every sum depends only on the shape
// (deterministic).
//
// groups > 1 stacks that many independent batches along N (the BBN branches through their
// shared trunk): each (group, channel) pair is one statistic s = group * C + channel, with its own
// mean and variance over the group's N/groups samples, and the running statistics take the
// groups' in order, as that many separate calls would. stats_merge and grad_merge then run
// one workgroup per channel over its groups.
//
// With relu == 1 the forward writes y = max(bn(x), 0) and the backward reads that y to pass
// dy only where y > 0 (exactly where the normalised value is positive): the ReLU costs no
// pass and no tensor of its own.

struct P {
    n: u32,         // N*C*H*W
    c: u32,
    hw: u32,
    count: u32,     // N/groups*H*W: elements per statistic
    eps: f32,
    momentum: f32,
    training: u32,
    chunk: u32,     // values per chunk of a channel
    chunks: u32,    // chunks per channel
    relu: u32,
    groups: u32,    // batches stacked along N
    nb: u32,        // N/groups: samples per group
}

@group(0) @binding(0) var<uniform> p: P;

// stats: mean and biased variance per (channel, chunk).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> var_out: array<f32>;

// apply: y = (x - mean) / sqrt(var + eps) * gamma + beta (then max(y, 0) with relu).
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> variance: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// stats (one chunk per channel, one group) and stats_merge also update the running statistics
// in place (see `update_running`): bound after their own outputs.
@group(0) @binding(4) var<storage, read_write> stats_rm: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats_rv: array<f32>;
@group(0) @binding(5) var<storage, read_write> merge_rm: array<f32>;
@group(0) @binding(6) var<storage, read_write> merge_rv: array<f32>;

// grad_sums: sums of dy and of dy * xhat per (channel, chunk); reads x, mean, variance, dy and
// the fused ReLU's output y_act (bound to dy without relu).
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> y_act: array<f32>;
@group(0) @binding(6) var<storage, read_write> ggamma_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> gbeta_out: array<f32>;

// stats_merge: [C, chunks] partial results in, per-channel results out.
@group(0) @binding(1) var<storage, read> part_a: array<f32>;
@group(0) @binding(2) var<storage, read> part_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_a: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_b: array<f32>;

// grad_merge: the chunks' sums (part_a: dy * xhat, part_b: dy), mean, variance and gamma in;
// ggamma, gbeta and grad_x's per-channel coefficients out.
@group(0) @binding(3) var<storage, read> m_mean: array<f32>;
@group(0) @binding(4) var<storage, read> m_variance: array<f32>;
@group(0) @binding(5) var<storage, read> m_gamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> m_ggamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> m_gbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> m_coef: array<vec4<f32>>;

// grad_x: coefficients, x, dy and y_act in, dx out.
@group(0) @binding(1) var<storage, read> coef: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gx_x: array<f32>;
@group(0) @binding(3) var<storage, read> gx_dy: array<f32>;
@group(0) @binding(4) var<storage, read> gx_y: array<f32>;
@group(0) @binding(5) var<storage, read_write> gx: array<f32>;

var<workgroup> part: array<vec2<f32>, 256>;

// Flat index of the r-th element (over the group's samples, H, W) of statistic s.
fn at(s: u32, r: u32) -> u32 {
    let n = (s / p.c) * p.nb + r / p.hw;
    return (n * p.c + s % p.c) * p.hw + r % p.hw;
}

// The statistic of flat element i.
fn stat_of(i: u32) -> u32 {
    let nc = i / p.hw;
    return (nc / (p.c * p.nb)) * p.c + nc % p.c;
}

// Sum of v over the workgroup (a fixed tree); every invocation gets the result.
fn wg_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    part[lid] = v;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    let s = part[0];
    workgroupBarrier();
    return s;
}

// The first value of chunk g % chunks (of channel g / chunks) and its number of values.
fn chunk_range(g: u32) -> vec2<u32> {
    let start = (g % p.chunks) * p.chunk;
    return vec2<u32>(start, min(p.chunk, p.count - start));
}

// Values in chunk j of a channel.
fn chunk_len(j: u32) -> f32 {
    return f32(min(p.chunk, p.count - j * p.chunk));
}

@compute @workgroup_size(256)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let st = g / p.chunks;
    if st >= p.c * p.groups { return; }
    let span = chunk_range(g);
    let end = span.x + span.y;
    // One pass of sums shifted by the chunk's first value k: the variance from
    // sum (x-k)^2 - (sum (x-k))^2 / n only cancels when the chunk's mean is many standard
    // deviations from k, unlike E[x^2] - m^2 for data far from zero.
    let k = x[at(st, span.x)];
    var s = vec2<f32>(0.0);
    for (var r = span.x + lid; r < end; r += 256u) {
        let d = x[at(st, r)] - k;
        s += vec2<f32>(d, d * d);
    }
    let t = wg_sum(lid, s);
    let n = f32(span.y);
    if lid == 0u {
        let m = k + t.x / n;
        let v = max(t.y - t.x * t.x / n, 0.0) / n;
        mean_out[g] = m;
        var_out[g] = v;
        if p.chunks == 1u && p.groups == 1u {
            let r = update_running(vec2<f32>(stats_rm[st], stats_rv[st]), m, v);
            stats_rm[st] = r.x;
            stats_rv[st] = r.y;
        }
    }
}

// The running statistics (rm, rv) after a batch with mean m and biased variance v:
// rm = (1-mom) rm + mom m, rv = (1-mom) rv + mom v count/(count-1) (PyTorch: unbiased).
fn update_running(r: vec2<f32>, m: f32, v: f32) -> vec2<f32> {
    let n = f32(p.count);
    let mom = p.momentum;
    return vec2<f32>((1.0 - mom) * r.x + mom * m, (1.0 - mom) * r.y + mom * v * n / (n - 1.0));
}

// Combines the chunks' (count n_j, mean m_j, variance v_j) of each group of channel c:
// mean = sum n_j m_j / n, var = sum n_j (v_j + (m_j - mean)^2) / n (Chan et al.'s pairwise
// update, all at once); the running statistics take the groups one after another.
@compute @workgroup_size(256)
fn stats_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = wid.x + wid.y * nwg.x;
    if c >= p.c { return; }
    var r = vec2<f32>(merge_rm[c], merge_rv[c]);
    for (var gi = 0u; gi < p.groups; gi++) {
        let st = gi * p.c + c;
        let row = st * p.chunks;
        var s = vec2<f32>(0.0);
        for (var j = lid; j < p.chunks; j += 256u) { s.x += chunk_len(j) * part_a[row + j]; }
        let m = wg_sum(lid, s).x / f32(p.count);
        var q = vec2<f32>(0.0);
        for (var j = lid; j < p.chunks; j += 256u) {
            let d = part_a[row + j] - m;
            q.x += chunk_len(j) * (part_b[row + j] + d * d);
        }
        let v = wg_sum(lid, q).x / f32(p.count);
        if lid == 0u {
            out_a[st] = m;
            out_b[st] = v;
        }
        r = update_running(r, m, v);
    }
    if lid == 0u {
        merge_rm[c] = r.x;
        merge_rv[c] = r.y;
    }
}

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let c = (i / p.hw) % p.c;
    let s = stat_of(i);
    let v = (x[i] - mean[s]) * inverseSqrt(variance[s] + p.eps) * gamma[c] + beta[c];
    y[i] = select(v, max(v, 0.0), p.relu == 1u);
}

// dy of element k, zero where the fused ReLU cut the output.
fn dy_at(k: u32) -> f32 {
    let g = dy[k];
    return select(g, 0.0, p.relu == 1u && y_act[k] <= 0.0);
}

@compute @workgroup_size(256)
fn grad_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let st = g / p.chunks;
    if st >= p.c * p.groups { return; }
    let span = chunk_range(g);
    let end = span.x + span.y;
    let m = mean[st];
    let is = inverseSqrt(variance[st] + p.eps);
    var s = vec2<f32>(0.0);
    for (var r = span.x + lid; r < end; r += 256u) {
        let k = at(st, r);
        s += dy_at(k) * vec2<f32>(1.0, (x[k] - m) * is);
    }
    let t = wg_sum(lid, s);
    if lid == 0u {
        gbeta_out[g] = t.x;
        ggamma_out[g] = t.y;
    }
}

// Sums the chunks of each group of channel c (ggamma = sum dy * xhat, gbeta = sum dy; the
// groups' sums add up) and derives each group's coefficients (k, a, mean, s) for grad_x's
// dx = k * (dy - a - (x - mean) * s): in training k = gamma * istd, a = gbeta / n,
// s = istd * ggamma / n with the group's sums; in eval a = s = 0.
@compute @workgroup_size(256)
fn grad_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = wid.x + wid.y * nwg.x;
    if c >= p.c { return; }
    var total = vec2<f32>(0.0);
    for (var gi = 0u; gi < p.groups; gi++) {
        let st = gi * p.c + c;
        let row = st * p.chunks;
        var s = vec2<f32>(0.0);
        for (var j = lid; j < p.chunks; j += 256u) {
            s += vec2<f32>(part_a[row + j], part_b[row + j]);
        }
        let t = wg_sum(lid, s);
        total += t;
        let is = inverseSqrt(m_variance[st] + p.eps);
        let n = f32(p.count);
        let train = p.training != 0u;
        if lid == 0u {
            m_coef[st] = vec4<f32>(m_gamma[c] * is, select(0.0, t.y / n, train), m_mean[st],
                                   select(0.0, is * t.x / n, train));
        }
    }
    if lid == 0u {
        m_ggamma[c] = total.x;
        m_gbeta[c] = total.y;
    }
}

@compute @workgroup_size(256)
fn grad_x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let k = coef[stat_of(i)];
    let g = select(gx_dy[i], 0.0, p.relu == 1u && gx_y[i] <= 0.0);
    gx[i] = k.x * (g - k.y - (gx_x[i] - k.z) * k.w);
}
