// 2-D convolution with PyTorch semantics: x [N, Cin, H, W], weights [Cout, Cin/groups, KH, KW],
// zero padding, stride, dilation and groups. Forward, grad_x and grad_w; grad_b is a plain
// per-channel sum (reduce.wgsl). The tiled kernels give each thread (forward, grad_x) or
// workgroup (grad_w) 4 channels of one group, so that every value loaded from x or gy is used
// 4 times; the direct kernels (one element each) serve groups with fewer than 4 channels.

struct P {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, dil: u32,
    groups: u32, cin_g: u32, cout_g: u32, tiles: u32,   // tiles: channel tiles per group
    total: u32, has_bias: u32, _p0: u32, _p1: u32,      // total: threads (or workgroups) needed
}

@group(0) @binding(0) var<uniform> p: P;

// Forward: y = conv(x, wt) + bias (bias is bound to wt and ignored when has_bias == 0).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// grad_x: gx = conv_transpose(gy, wt).
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// grad_w: gw = correlation of gy with x (gy at binding 1, x at binding 2).
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(3) var<storage, read_write> gw: array<f32>;

var<workgroup> part: array<f32, 256>;
var<workgroup> part4: array<vec4<f32>, 256>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Thread i of a kernel over (n, group, channel tile, row, col) of a rows x cols plane.
struct Slot { n: u32, g: u32, c0: u32, row: u32, col: u32 }

fn slot(i: u32, rows: u32, cols: u32, per_group: u32, tile: u32) -> Slot {
    let col = i % cols;
    var r = i / cols;
    let row = r % rows;
    r = r / rows;
    let t = r % (p.groups * p.tiles);
    let g = t / p.tiles;
    return Slot(r / (p.groups * p.tiles), g, g * per_group + (t % p.tiles) * tile, row, col);
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.ho, p.wo, p.cout_g, 4u);
    let end = (s.g + 1u) * p.cout_g;
    // Channels past the group's end read the last one (in bounds); their sums are dropped.
    let co = min(vec4<u32>(s.c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(end - 1u));
    let wb = co * (p.cin_g * p.kh * p.kw);
    let iy0 = i32(s.row * p.stride) - i32(p.pad);
    let ix0 = i32(s.col * p.stride) - i32(p.pad);
    var acc = vec4<f32>(0.0);
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xc = (s.n * p.cin + s.g * p.cin_g + ci) * p.h;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky * p.dil);
            if iy < 0 || iy >= i32(p.h) { continue; }
            let xr = (xc + u32(iy)) * p.w;
            let wr = (ci * p.kh + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx * p.dil);
                if ix < 0 || ix >= i32(p.w) { continue; }
                let o = wr + kx;
                let wv = vec4<f32>(wt[wb.x + o], wt[wb.y + o], wt[wb.z + o], wt[wb.w + o]);
                acc += x[xr + u32(ix)] * wv;
            }
        }
    }
    if p.has_bias == 1u {
        acc += vec4<f32>(bias[co.x], bias[co.y], bias[co.z], bias[co.w]);
    }
    let plane = p.ho * p.wo;
    let yb = s.n * p.cout * plane + s.row * p.wo + s.col;
    for (var j = 0u; j < 4u; j++) {
        if s.c0 + j < end { y[yb + (s.c0 + j) * plane] = acc[j]; }
    }
}

@compute @workgroup_size(256)
fn forward_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.ho, p.wo, p.cout_g, 1u);
    let wb = s.c0 * p.cin_g * p.kh * p.kw;
    let iy0 = i32(s.row * p.stride) - i32(p.pad);
    let ix0 = i32(s.col * p.stride) - i32(p.pad);
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xc = (s.n * p.cin + s.g * p.cin_g + ci) * p.h;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky * p.dil);
            if iy < 0 || iy >= i32(p.h) { continue; }
            let xr = (xc + u32(iy)) * p.w;
            let wr = wb + (ci * p.kh + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx * p.dil);
                if ix < 0 || ix >= i32(p.w) { continue; }
                acc += x[xr + u32(ix)] * wt[wr + kx];
            }
        }
    }
    if p.has_bias == 1u { acc += bias[s.c0]; }
    y[((s.n * p.cout + s.c0) * p.ho + s.row) * p.wo + s.col] = acc;
}

// The output index along one axis that kernel tap k reaches from input index i, or -1 when
// the tap falls between strided outputs or outside the output.
fn tap_out(i: u32, k: u32, out: u32) -> i32 {
    let t = i32(i + p.pad) - i32(k * p.dil);
    if t < 0 || t % i32(p.stride) != 0 { return -1; }
    let o = t / i32(p.stride);
    return select(-1, o, o < i32(out));
}

@compute @workgroup_size(256)
fn grad_x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.h, p.w, p.cin_g, 4u);
    let end = (s.g + 1u) * p.cin_g;
    let kk = p.kh * p.kw;
    // In-group input channels of the tile, clamped like the forward's output channels.
    let cl = min(vec4<u32>(s.c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(end - 1u)) - s.g * p.cin_g;
    let wl = cl * kk;
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let oy = tap_out(s.row, ky, p.ho);
        if oy < 0 { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ox = tap_out(s.col, kx, p.wo);
            if ox < 0 { continue; }
            let tap = ky * p.kw + kx;
            for (var c = 0u; c < p.cout_g; c++) {
                let co = s.g * p.cout_g + c;
                let g = gy[((s.n * p.cout + co) * p.ho + u32(oy)) * p.wo + u32(ox)];
                let wb = co * p.cin_g * kk + tap;
                acc += g * vec4<f32>(wt[wb + wl.x], wt[wb + wl.y], wt[wb + wl.z], wt[wb + wl.w]);
            }
        }
    }
    let plane = p.h * p.w;
    let xb = s.n * p.cin * plane + s.row * p.w + s.col;
    for (var j = 0u; j < 4u; j++) {
        if s.c0 + j < end { gx[xb + (s.c0 + j) * plane] = acc[j]; }
    }
}

@compute @workgroup_size(256)
fn grad_x_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = slot(i, p.h, p.w, p.cin_g, 1u);
    let kk = p.kh * p.kw;
    let cl = s.c0 - s.g * p.cin_g;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let oy = tap_out(s.row, ky, p.ho);
        if oy < 0 { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ox = tap_out(s.col, kx, p.wo);
            if ox < 0 { continue; }
            let tap = ky * p.kw + kx;
            for (var c = 0u; c < p.cout_g; c++) {
                let co = s.g * p.cout_g + c;
                let g = gy[((s.n * p.cout + co) * p.ho + u32(oy)) * p.wo + u32(ox)];
                acc += g * wt[(co * p.cin_g + cl) * kk + tap];
            }
        }
    }
    gx[((s.n * p.cin + s.c0) * p.h + s.row) * p.w + s.col] = acc;
}

// One workgroup per 4 output channels of one group at one (ci, ky, kx): a reduction over
// N·Ho·Wo in which each x value loaded meets 4 output gradients.
@compute @workgroup_size(256)
fn grad_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = wid.x + wid.y * nwg.x;
    let valid = e < p.total;
    let we = min(e, p.total - 1u);
    let kx = we % p.kw;
    var r = we / p.kw;
    let ky = r % p.kh;
    r = r / p.kh;
    let cl = r % p.cin_g;
    let t = r / p.cin_g;
    let g = t / p.tiles;
    let c0 = g * p.cout_g + (t % p.tiles) * 4u;
    let end = (g + 1u) * p.cout_g;
    let plane = p.ho * p.wo;
    let co = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(end - 1u)) * plane;
    let ci = g * p.cin_g + cl;
    let dy = i32(ky * p.dil) - i32(p.pad);
    let dx = i32(kx * p.dil) - i32(p.pad);
    var sum = vec4<f32>(0.0);
    for (var q = lid; q < p.n * plane; q += 256u) {
        let ox = q % p.wo;
        let oy = (q / p.wo) % p.ho;
        let n = q / plane;
        let iy = i32(oy * p.stride) + dy;
        let ix = i32(ox * p.stride) + dx;
        if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
            let gb = n * p.cout * plane + oy * p.wo + ox;
            let g4 = vec4<f32>(gy[gb + co.x], gy[gb + co.y], gy[gb + co.z], gy[gb + co.w]);
            sum += g4 * xin[((n * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    part4[lid] = sum;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { part4[lid] += part4[lid + w]; }
        workgroupBarrier();
    }
    if lid == 0u && valid {
        let tap = ky * p.kw + kx;
        for (var j = 0u; j < 4u; j++) {
            if c0 + j < end { gw[((c0 + j) * p.cin_g + cl) * p.kh * p.kw + tap] = part4[0][j]; }
        }
    }
}

// One workgroup per weight element [co, ci, ky, kx]: a reduction over N·Ho·Wo.
@compute @workgroup_size(256)
fn grad_w_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = wid.x + wid.y * nwg.x;
    let valid = e < p.total;
    let we = min(e, p.total - 1u);
    let kx = we % p.kw;
    var r = we / p.kw;
    let ky = r % p.kh;
    r = r / p.kh;
    let cl = r % p.cin_g;
    let co = r / p.cin_g;
    let ci = (co / p.cout_g) * p.cin_g + cl;
    let dy = i32(ky * p.dil) - i32(p.pad);
    let dx = i32(kx * p.dil) - i32(p.pad);
    let plane = p.ho * p.wo;
    var sum = 0.0;
    for (var q = lid; q < p.n * plane; q += 256u) {
        let ox = q % p.wo;
        let oy = (q / p.wo) % p.ho;
        let n = q / plane;
        let iy = i32(oy * p.stride) + dy;
        let ix = i32(ox * p.stride) + dx;
        if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
            let g = gy[(n * p.cout + co) * plane + oy * p.wo + ox];
            sum += g * xin[((n * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    part[lid] = sum;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if lid < w { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    if lid == 0u && valid { gw[we] = part[0]; }
}
