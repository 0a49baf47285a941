//! CPU reference of the elementwise and reduction ops.

use super::Arr;

fn pad4(shape: &[usize]) -> [usize; 4] {
    let mut d = [1; 4];
    d[4 - shape.len()..].copy_from_slice(shape);
    d
}

fn idx4(c: [usize; 4], d: [usize; 4]) -> usize {
    ((c[0] * d[1] + c[1]) * d[2] + c[2]) * d[3] + c[3]
}

fn coords4(mut i: usize, d: [usize; 4]) -> [usize; 4] {
    let mut c = [0; 4];
    for k in (0..4).rev() {
        c[k] = i % d[k];
        i /= d[k];
    }
    c
}

/// NumPy broadcast of two shapes (rank <= 4).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    let (pa, pb) = (pad4(a), pad4(b));
    (4 - r..4).map(|i| pa[i].max(pb[i])).collect()
}

/// Element of `x` at output coordinate `c` under broadcasting.
fn get_b(x: &Arr, c: [usize; 4]) -> f64 {
    let d = pad4(&x.shape);
    let cc = [0, 1, 2, 3].map(|k| if d[k] == 1 { 0 } else { c[k] });
    x.data[idx4(cc, d)]
}

pub fn binary(a: &Arr, b: &Arr, f: impl Fn(f64, f64) -> f64) -> Arr {
    let shape = broadcast_shape(&a.shape, &b.shape);
    let d = pad4(&shape);
    let n = shape.iter().product();
    Arr::new(
        &shape,
        (0..n)
            .map(|i| {
                let c = coords4(i, d);
                f(get_b(a, c), get_b(b, c))
            })
            .collect(),
    )
}

/// Sums `x` down to `shape` (the reverse of broadcasting).
pub fn sum_to(x: &Arr, shape: &[usize]) -> Arr {
    let (dx, ds) = (pad4(&x.shape), pad4(shape));
    let mut out = Arr::zeros(shape);
    for i in 0..x.numel() {
        let c = coords4(i, dx);
        let cc = [0, 1, 2, 3].map(|k| if ds[k] == 1 { 0 } else { c[k] });
        out.data[idx4(cc, ds)] += x.data[i];
    }
    out
}

/// Broadcasts `g` to `shape`.
pub fn expand(g: &Arr, shape: &[usize]) -> Arr {
    binary(&Arr::zeros(shape), g, |_, v| v)
}

/// Gradients of a op b at gy: (ga, gb) with op one of "add", "sub", "mul", "div".
pub fn binary_backward(a: &Arr, b: &Arr, gy: &Arr, op: &str) -> (Arr, Arr) {
    let ab = |f: &dyn Fn(f64, f64) -> f64| {
        let shape = broadcast_shape(&a.shape, &b.shape);
        let d = pad4(&shape);
        let n: usize = shape.iter().product();
        Arr::new(
            &shape,
            (0..n)
                .map(|i| {
                    let c = coords4(i, d);
                    f(get_b(a, c), get_b(b, c)) * gy.data[i]
                })
                .collect(),
        )
    };
    let (ga, gb) = match op {
        "add" => (ab(&|_, _| 1.0), ab(&|_, _| 1.0)),
        "sub" => (ab(&|_, _| 1.0), ab(&|_, _| -1.0)),
        "mul" => (ab(&|_, b| b), ab(&|a, _| a)),
        "div" => (ab(&|_, b| 1.0 / b), ab(&|a, b| -a / (b * b))),
        "add_relu" => {
            let step = |a: f64, b: f64| if a + b > 0.0 { 1.0 } else { 0.0 };
            (ab(&step), ab(&step))
        }
        _ => panic!("unknown binary op {op}"),
    };
    (sum_to(&ga, &a.shape), sum_to(&gb, &b.shape))
}

/// relu(a·b + c) for same-shape a, b, c.
pub fn mul_add_relu(a: &Arr, b: &Arr, c: &Arr) -> Arr {
    a.zip(b, |x, y| x * y).zip(c, |p, z| (p + z).max(0.0))
}

/// (ga, gb, gc) of relu(a·b + c) at gy: m = gy where a·b + c > 0, else 0; (m·b, m·a, m).
pub fn mul_add_relu_backward(a: &Arr, b: &Arr, c: &Arr, gy: &Arr) -> (Arr, Arr, Arr) {
    let pre = a.zip(b, |x, y| x * y).zip(c, |p, z| p + z);
    let m = pre.zip(gy, |v, g| if v > 0.0 { g } else { 0.0 });
    (m.zip(b, |g, y| g * y), m.zip(a, |g, x| g * x), m)
}

pub fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// (forward, derivative) of a unary op by name: relu, sigmoid, exp, log, scale (by k).
pub fn unary(x: &Arr, op: &str, k: f64) -> (Arr, Arr) {
    match op {
        "relu" => (
            x.map(|v| v.max(0.0)),
            x.map(|v| if v > 0.0 { 1.0 } else { 0.0 }),
        ),
        "sigmoid" => (x.map(sigmoid), x.map(|v| sigmoid(v) * (1.0 - sigmoid(v)))),
        "exp" => (x.map(f64::exp), x.map(f64::exp)),
        "log" => (x.map(f64::ln), x.map(|v| 1.0 / v)),
        "scale" => (x.map(|v| k * v), x.map(|_| k)),
        _ => panic!("unknown unary op {op}"),
    }
}

/// Mixup of a batch x [N, ...]: λ·x[i] + (1 − λ)·x[perm[i]] for every sample i.
pub fn mixup(x: &Arr, perm: &[u32], lambda: f64) -> Arr {
    let d = x.shape[1..].iter().product::<usize>();
    let mut out = x.clone();
    for (i, &j) in perm.iter().enumerate() {
        for k in 0..d {
            out.data[i * d + k] =
                lambda * x.data[i * d + k] + (1.0 - lambda) * x.data[j as usize * d + k];
        }
    }
    out
}
