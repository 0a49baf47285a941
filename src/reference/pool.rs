//! CPU reference of the spatial poolings torchvision's ResNet-18 and VGG16-BN use: max
//! pooling (PyTorch's `F.max_pool2d`, ceil_mode=false) and adaptive average pooling
//! (`F.adaptive_avg_pool2d`), forward and backward over [N, C, H, W] arrays.

use super::Arr;

/// Output length of a max pooling window of `k` with `stride` and `padding` along an axis of
/// `len` (ceil_mode=false): (len + 2·padding − k) / stride + 1.
pub fn max_pool_out_len(len: usize, k: usize, stride: usize, padding: usize) -> usize {
    assert!(len + 2 * padding >= k, "window does not fit the input");
    (len + 2 * padding - k) / stride + 1
}

/// y = max over each window (padding counts as −∞) and the index h·W + w of the first
/// element holding that maximum in its plane, as PyTorch's `return_indices=True`.
pub fn max_pool2d(x: &Arr, k: usize, stride: usize, padding: usize) -> (Arr, Vec<usize>) {
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let oh = max_pool_out_len(h, k, stride, padding);
    let ow = max_pool_out_len(w, k, stride, padding);
    let mut y = Arr::zeros(&[n, c, oh, ow]);
    let mut idx = vec![0; n * c * oh * ow];
    for plane in 0..n * c {
        let xp = &x.data[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = f64::NEG_INFINITY;
                let mut arg = None;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * stride + ky) as isize - padding as isize;
                        let ix = (ox * stride + kx) as isize - padding as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let at = iy as usize * w + ix as usize;
                        // Strictly greater: the first maximum in row-major order wins ties.
                        if arg.is_none() || xp[at] > best {
                            best = xp[at];
                            arg = Some(at);
                        }
                    }
                }
                let o = (plane * oh + oy) * ow + ox;
                y.data[o] = best;
                idx[o] = arg.expect("every window holds an input element");
            }
        }
    }
    (y, idx)
}

/// gx: each output's gradient added to the input element its index names.
pub fn max_pool2d_backward(x_shape: &[usize], idx: &[usize], gy: &Arr) -> Arr {
    let hw = x_shape[2] * x_shape[3];
    let ohw = gy.shape[2] * gy.shape[3];
    let mut gx = Arr::zeros(x_shape);
    for (o, &g) in gy.data.iter().enumerate() {
        gx.data[(o / ohw) * hw + idx[o]] += g;
    }
    gx
}

/// PyTorch's adaptive pooling bin of output `i` of `out` over an axis of `len`:
/// [floor(i·len/out), ceil((i+1)·len/out)).
pub fn adaptive_bin(i: usize, len: usize, out: usize) -> (usize, usize) {
    (i * len / out, ((i + 1) * len).div_ceil(out))
}

/// [N, C, H, W] -> [N, C, oh, ow]: the mean of each adaptive bin.
pub fn adaptive_avg_pool2d(x: &Arr, oh: usize, ow: usize) -> Arr {
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let mut y = Arr::zeros(&[n, c, oh, ow]);
    for plane in 0..n * c {
        for oy in 0..oh {
            let (y0, y1) = adaptive_bin(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = adaptive_bin(ox, w, ow);
                let mut s = 0.0;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        s += x.data[(plane * h + iy) * w + ix];
                    }
                }
                y.data[(plane * oh + oy) * ow + ox] = s / ((y1 - y0) * (x1 - x0)) as f64;
            }
        }
    }
    y
}

/// gx: each output's gradient spread evenly over its bin.
pub fn adaptive_avg_pool2d_backward(x_shape: &[usize], gy: &Arr) -> Arr {
    let [h, w] = [x_shape[2], x_shape[3]];
    let [oh, ow] = [gy.shape[2], gy.shape[3]];
    let mut gx = Arr::zeros(x_shape);
    for plane in 0..x_shape[0] * x_shape[1] {
        for oy in 0..oh {
            let (y0, y1) = adaptive_bin(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = adaptive_bin(ox, w, ow);
                let g = gy.data[(plane * oh + oy) * ow + ox] / ((y1 - y0) * (x1 - x0)) as f64;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        gx.data[(plane * h + iy) * w + ix] += g;
                    }
                }
            }
        }
    }
    gx
}
