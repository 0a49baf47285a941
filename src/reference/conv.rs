//! CPU reference of 2-D convolution (PyTorch semantics: NCHW, weights [Cout, Cin/groups, KH,
//! KW], zero padding, stride, dilation, groups).

use super::Arr;

/// Output length along one axis: (len + 2·padding − dilation·(k − 1) − 1) / stride + 1.
pub fn out_len(len: usize, k: usize, stride: usize, padding: usize, dilation: usize) -> usize {
    let span = dilation * (k - 1) + 1;
    assert!(len + 2 * padding >= span, "kernel does not fit the input");
    (len + 2 * padding - span) / stride + 1
}

/// Calls `f(y index, x index, w index)` for every product x·w that contributes to an output
/// element (taps that land in the zero padding are skipped). Returns the output shape.
fn visit(
    xs: &[usize],
    ws: &[usize],
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
    mut f: impl FnMut(usize, usize, usize),
) -> [usize; 4] {
    let (n, cin, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (cout, cin_g, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    assert_eq!(
        cin_g * groups,
        cin,
        "weight in-channels times groups != x channels"
    );
    assert_eq!(cout % groups, 0, "groups must divide out-channels");
    let cout_g = cout / groups;
    let ho = out_len(h, kh, stride, padding, dilation);
    let wo = out_len(w, kw, stride, padding, dilation);
    for b in 0..n {
        for co in 0..cout {
            let grp = co / cout_g;
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((b * cout + co) * ho + oy) * wo + ox;
                    for cl in 0..cin_g {
                        let ci = grp * cin_g + cl;
                        for ky in 0..kh {
                            let iy = (oy * stride + ky * dilation) as isize - padding as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * stride + kx * dilation) as isize - padding as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * cin + ci) * h + iy as usize) * w + ix as usize;
                                let wi = ((co * cin_g + cl) * kh + ky) * kw + kx;
                                f(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
    [n, cout, ho, wo]
}

/// y = conv2d(x, w) + b.
pub fn conv2d(
    x: &Arr,
    w: &Arr,
    b: Option<&Arr>,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> Arr {
    let shape = [
        x.shape[0],
        w.shape[0],
        out_len(x.shape[2], w.shape[2], stride, padding, dilation),
        out_len(x.shape[3], w.shape[3], stride, padding, dilation),
    ];
    let mut y = Arr::zeros(&shape);
    visit(
        &x.shape,
        &w.shape,
        stride,
        padding,
        dilation,
        groups,
        |yi, xi, wi| y.data[yi] += x.data[xi] * w.data[wi],
    );
    if let Some(b) = b {
        let plane = shape[2] * shape[3];
        for (i, v) in y.data.iter_mut().enumerate() {
            *v += b.data[(i / plane) % shape[1]];
        }
    }
    y
}

/// Gradients (gx, gw, gb) of conv2d at gy; gb is gy summed over n, h, w.
pub fn conv2d_backward(
    x: &Arr,
    w: &Arr,
    gy: &Arr,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> (Arr, Arr, Arr) {
    let mut gx = Arr::zeros(&x.shape);
    let mut gw = Arr::zeros(&w.shape);
    let shape = visit(
        &x.shape,
        &w.shape,
        stride,
        padding,
        dilation,
        groups,
        |yi, xi, wi| {
            gx.data[xi] += gy.data[yi] * w.data[wi];
            gw.data[wi] += gy.data[yi] * x.data[xi];
        },
    );
    assert_eq!(gy.shape, shape, "gy shape");
    let mut gb = Arr::zeros(&[shape[1]]);
    let plane = shape[2] * shape[3];
    for (i, v) in gy.data.iter().enumerate() {
        gb.data[(i / plane) % shape[1]] += v;
    }
    (gx, gw, gb)
}
