//! CPU reference of BatchNorm2d, channel mean/max pooling, global average pooling and the
//! channel ops (concat, slice, ResNet option-A shortcut), forward and backward.

use super::Arr;

fn dims4(x: &Arr) -> [usize; 4] {
    match x.shape[..] {
        [n, c, h, w] => [n, c, h, w],
        ref s => panic!("expected an [N, C, H, W] array, got {s:?}"),
    }
}

/// Per-channel mean and biased variance over (N, H, W).
pub fn channel_stats(x: &Arr) -> (Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = dims4(x);
    let count = (n * h * w) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ci in 0..c {
        let vals = || (0..n).flat_map(move |ni| (0..h * w).map(move |s| (ni, s)));
        let m = vals()
            .map(|(ni, s)| x.at4(ni, ci, s / w, s % w))
            .sum::<f64>()
            / count;
        mean[ci] = m;
        var[ci] = vals()
            .map(|(ni, s)| (x.at4(ni, ci, s / w, s % w) - m).powi(2))
            .sum::<f64>()
            / count;
    }
    (mean, var)
}

/// (x - mean[c]) / sqrt(var[c] + eps) · gamma[c] + beta[c].
pub fn batch_norm_apply(
    x: &Arr,
    gamma: &Arr,
    beta: &Arr,
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> Arr {
    let [_, c, h, w] = dims4(x);
    let mut y = x.clone();
    for (i, v) in y.data.iter_mut().enumerate() {
        let ci = (i / (h * w)) % c;
        *v = (*v - mean[ci]) / (var[ci] + eps).sqrt() * gamma.data[ci] + beta.data[ci];
    }
    y
}

/// Training-mode BatchNorm2d: (y, batch mean, biased batch variance).
pub fn batch_norm_train(x: &Arr, gamma: &Arr, beta: &Arr, eps: f64) -> (Arr, Vec<f64>, Vec<f64>) {
    let (mean, var) = channel_stats(x);
    (
        batch_norm_apply(x, gamma, beta, &mean, &var, eps),
        mean,
        var,
    )
}

/// The running statistics after one training step on x (PyTorch: unbiased variance).
pub fn running_update(
    x: &Arr,
    running_mean: &[f64],
    running_var: &[f64],
    momentum: f64,
) -> (Vec<f64>, Vec<f64>) {
    let [n, _, h, w] = dims4(x);
    let count = (n * h * w) as f64;
    let (mean, var) = channel_stats(x);
    let rm = running_mean
        .iter()
        .zip(&mean)
        .map(|(r, m)| (1.0 - momentum) * r + momentum * m)
        .collect();
    let rv = running_var
        .iter()
        .zip(&var)
        .map(|(r, v)| (1.0 - momentum) * r + momentum * v * count / (count - 1.0))
        .collect();
    (rm, rv)
}

/// (gx, ggamma, gbeta) of BatchNorm2d at gy. Training: `mean`/`var` are the batch
/// statistics of x and the gradient flows through them; eval: the fixed running statistics.
pub fn batch_norm_backward(
    x: &Arr,
    gamma: &Arr,
    mean: &[f64],
    var: &[f64],
    gy: &Arr,
    training: bool,
    eps: f64,
) -> (Arr, Arr, Arr) {
    let [n, c, h, w] = dims4(x);
    let count = (n * h * w) as f64;
    let ch = |i: usize| (i / (h * w)) % c;
    let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let xhat = |i: usize| (x.data[i] - mean[ch(i)]) * istd[ch(i)];
    let mut gg = Arr::zeros(&[c]);
    let mut gb = Arr::zeros(&[c]);
    for i in 0..x.numel() {
        gb.data[ch(i)] += gy.data[i];
        gg.data[ch(i)] += gy.data[i] * xhat(i);
    }
    let mut gx = Arr::zeros(&x.shape);
    for i in 0..x.numel() {
        let k = ch(i);
        let g = if training {
            gy.data[i] - gb.data[k] / count - xhat(i) * gg.data[k] / count
        } else {
            gy.data[i]
        };
        gx.data[i] = gamma.data[k] * istd[k] * g;
    }
    (gx, gg, gb)
}

/// [N, C, H, W] -> [N, 2, H, W]: mean and max over channels.
pub fn channel_mean_max(x: &Arr) -> Arr {
    let [n, c, h, w] = dims4(x);
    let mut y = Arr::zeros(&[n, 2, h, w]);
    for ni in 0..n {
        for s in 0..h * w {
            let vals: Vec<f64> = (0..c).map(|ci| x.at4(ni, ci, s / w, s % w)).collect();
            y.data[(ni * 2) * h * w + s] = vals.iter().sum::<f64>() / c as f64;
            y.data[(ni * 2 + 1) * h * w + s] = vals.iter().cloned().fold(f64::MIN, f64::max);
        }
    }
    y
}

/// gx of channel_mean_max: gy_mean / C everywhere, gy_max at the first maximal channel.
pub fn channel_mean_max_backward(x: &Arr, gy: &Arr) -> Arr {
    let [n, c, h, w] = dims4(x);
    let mut gx = Arr::zeros(&x.shape);
    for ni in 0..n {
        for s in 0..h * w {
            let mut arg = 0;
            for ci in 1..c {
                if x.at4(ni, ci, s / w, s % w) > x.at4(ni, arg, s / w, s % w) {
                    arg = ci;
                }
            }
            for ci in 0..c {
                let mut g = gy.data[(ni * 2) * h * w + s] / c as f64;
                if ci == arg {
                    g += gy.data[(ni * 2 + 1) * h * w + s];
                }
                gx.data[(ni * c + ci) * h * w + s] = g;
            }
        }
    }
    gx
}

/// [N, C, H, W] -> [N, C]: mean over H, W.
pub fn global_avg_pool(x: &Arr) -> Arr {
    let [n, c, h, w] = dims4(x);
    let hw = h * w;
    Arr::new(
        &[n, c],
        (0..n * c)
            .map(|k| x.data[k * hw..(k + 1) * hw].iter().sum::<f64>() / hw as f64)
            .collect(),
    )
}

pub fn global_avg_pool_backward(x_shape: &[usize], gy: &Arr) -> Arr {
    let hw = x_shape[2] * x_shape[3];
    let n: usize = x_shape.iter().product();
    Arr::new(
        x_shape,
        (0..n).map(|i| gy.data[i / hw] / hw as f64).collect(),
    )
}

/// (N, C, elements per channel) of a rank-2 or rank-4 array.
fn split(shape: &[usize]) -> (usize, usize, usize) {
    match *shape {
        [n, c] => (n, c, 1),
        [n, c, h, w] => (n, c, h * w),
        ref s => panic!("expected rank 2 or 4, got {s:?}"),
    }
}

/// Concatenation along dim 1.
pub fn concat_channels(xs: &[&Arr]) -> Arr {
    let (n, _, s) = split(&xs[0].shape);
    let total: usize = xs.iter().map(|x| x.shape[1]).sum();
    let mut shape = xs[0].shape.clone();
    shape[1] = total;
    let mut data = Vec::with_capacity(n * total * s);
    for ni in 0..n {
        for x in xs {
            let block = x.shape[1] * s;
            data.extend_from_slice(&x.data[ni * block..(ni + 1) * block]);
        }
    }
    Arr::new(&shape, data)
}

/// Channels [start, start + len) along dim 1.
pub fn slice_channels(x: &Arr, start: usize, len: usize) -> Arr {
    let (n, c, s) = split(&x.shape);
    let mut shape = x.shape.clone();
    shape[1] = len;
    let mut data = Vec::with_capacity(n * len * s);
    for ni in 0..n {
        data.extend_from_slice(&x.data[(ni * c + start) * s..(ni * c + start + len) * s]);
    }
    Arr::new(&shape, data)
}

/// Gradient of concat_channels: gy sliced back to each input's channels.
pub fn concat_channels_backward(channels: &[usize], gy: &Arr) -> Vec<Arr> {
    let mut start = 0;
    channels
        .iter()
        .map(|&c| {
            let g = slice_channels(gy, start, c);
            start += c;
            g
        })
        .collect()
}

/// Gradient of slice_channels: gy at channels [start, ..) of zeros of `x_shape`.
pub fn slice_channels_backward(x_shape: &[usize], start: usize, gy: &Arr) -> Arr {
    let (n, c, s) = split(x_shape);
    let len = gy.shape[1];
    let mut gx = Arr::zeros(x_shape);
    for ni in 0..n {
        gx.data[(ni * c + start) * s..(ni * c + start + len) * s]
            .copy_from_slice(&gy.data[ni * len * s..(ni + 1) * len * s]);
    }
    gx
}

/// ResNet option-A shortcut: x[:, :, ::s, ::s] with `pad` zero channels on each side.
pub fn shortcut_a(x: &Arr, stride: usize, pad: usize) -> Arr {
    let [n, c, h, w] = dims4(x);
    let (co, ho, wo) = (c + 2 * pad, h.div_ceil(stride), w.div_ceil(stride));
    let mut y = Arr::zeros(&[n, co, ho, wo]);
    for ni in 0..n {
        for ci in 0..c {
            for i in 0..ho {
                for j in 0..wo {
                    y.data[((ni * co + ci + pad) * ho + i) * wo + j] =
                        x.at4(ni, ci, i * stride, j * stride);
                }
            }
        }
    }
    y
}

pub fn shortcut_a_backward(x_shape: &[usize], stride: usize, pad: usize, gy: &Arr) -> Arr {
    let [n, c, h, w] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
    let (co, ho, wo) = (gy.shape[1], gy.shape[2], gy.shape[3]);
    let mut gx = Arr::zeros(x_shape);
    for ni in 0..n {
        for ci in 0..c {
            for i in 0..ho {
                for j in 0..wo {
                    gx.data[((ni * c + ci) * h + i * stride) * w + j * stride] =
                        gy.data[((ni * co + ci + pad) * ho + i) * wo + j];
                }
            }
        }
    }
    gx
}

/// attn = a1·s[:, 0] + a2·s[:, 1] with s [N, 2, H, W] broadcast over the channels.
pub fn lsk_select(a1: &Arr, a2: &Arr, s: &Arr) -> Arr {
    let [n, c, h, w] = dims4(a1);
    let mut y = Arr::zeros(&a1.shape);
    for ni in 0..n {
        for ci in 0..c {
            for px in 0..h * w {
                let i = (ni * c + ci) * h * w + px;
                let k = ni * 2 * h * w + px;
                y.data[i] = a1.data[i] * s.data[k] + a2.data[i] * s.data[k + h * w];
            }
        }
    }
    y
}

/// (d a1, d a2, d s) of lsk_select.
pub fn lsk_select_backward(a1: &Arr, a2: &Arr, s: &Arr, gy: &Arr) -> (Arr, Arr, Arr) {
    let [n, c, h, w] = dims4(a1);
    let (mut g1, mut g2, mut gs) = (
        Arr::zeros(&a1.shape),
        Arr::zeros(&a2.shape),
        Arr::zeros(&s.shape),
    );
    for ni in 0..n {
        for ci in 0..c {
            for px in 0..h * w {
                let i = (ni * c + ci) * h * w + px;
                let k = ni * 2 * h * w + px;
                g1.data[i] = gy.data[i] * s.data[k];
                g2.data[i] = gy.data[i] * s.data[k + h * w];
                gs.data[k] += gy.data[i] * a1.data[i];
                gs.data[k + h * w] += gy.data[i] * a2.data[i];
            }
        }
    }
    (g1, g2, gs)
}
