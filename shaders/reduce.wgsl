// Sums over the dimensions along which the output shape has size 1 (shapes padded to rank 4),
// and the reverse, broadcasting back (expand). Sums use one of two kernels (reduce.rs picks):
// sum_to, workgroups each summing a contiguous chunk of one output's reduced elements (one
// chunk per output, or several whose partial sums a second sum_to adds), and sum_to_small,
// one thread per output looping over its few reduced elements. The order of every sum is
// fixed by the shapes alone, so results are deterministic.

struct P {
    n_out: u32,
    n_red: u32,
    k: f32,
    chunks: u32,    // sum_to: chunks per output
    o: vec4<u32>,   // output dims
    i: vec4<u32>,   // input dims
    r: vec4<u32>,   // reduced dims: i where o == 1, else 1
    chunk: u32,     // sum_to: reduced elements per chunk
    _p0: u32,
    _p1: u32,
    _p2: u32,
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

// Workgroup g sums chunk g % chunks of output g / chunks into y[g] (y is [n_out, chunks]).
@compute @workgroup_size(256)
fn sum_to(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let o = g / p.chunks;
    let start = (g % p.chunks) * p.chunk;
    let end = min(start + p.chunk, p.n_red);
    let base = flat(coords(min(o, p.n_out - 1u), p.o), p.i);
    var s = 0.0;
    for (var r = start + lid; r < end; r += 256u) {
        s += x[base + flat(coords(r, p.r), p.i)];
    }
    part[lid] = s;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    if lid == 0u && o < p.n_out { y[g] = p.k * part[0]; }
}

// One thread per output, summing its reduced elements in row-major order by strides (no
// index divisions per element): adjacent threads read adjacent inputs whenever the last
// dimension is kept.
@compute @workgroup_size(256)
fn sum_to_small(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * 256u;
    if o >= p.n_out { return; }
    let base = flat(coords(o, p.o), p.i);
    let st = vec4<u32>(p.i.y * p.i.z * p.i.w, p.i.z * p.i.w, p.i.w, 1u);
    var s = 0.0;
    for (var a = 0u; a < p.r.x; a++) {
        for (var b = 0u; b < p.r.y; b++) {
            for (var c = 0u; c < p.r.z; c++) {
                let row = base + a * st.x + b * st.y + c * st.z;
                for (var d = 0u; d < p.r.w; d++) { s += x[row + d]; }
            }
        }
    }
    y[o] = p.k * s;
}

// y (input dims i) = x (output dims o) broadcast.
@compute @workgroup_size(256)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if idx >= p.n_red { return; }
    let c = coords(idx, p.i);
    y[idx] = p.k * x[flat(min(c, p.o - vec4<u32>(1u)), p.o)];
}
