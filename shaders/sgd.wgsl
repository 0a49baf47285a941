// One SGD step in place, in torch.optim.SGD's order of operations (dampening 0):
// g = grad + wd·p; buf = momentum·buf + g; p −= lr·(nesterov ? g + momentum·buf : buf).

struct P {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(256)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let w = param[i];
    let g = grad[i] + p.weight_decay * w;
    let b = p.momentum * buf[i] + g;
    buf[i] = b;
    let d = select(b, g + p.momentum * b, p.nesterov != 0u);
    param[i] = w - p.lr * d;
}
