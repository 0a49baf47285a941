//! BiFormer's pieces in f64 (`ops::regions`, `ops::attention`): regions of a map, their
//! routing, and softmax attention, forward and backward.

use super::Arr;

/// Offset in one [H, W] plane of pixel `pix` of region `rho`, for a g×g grid.
fn pixel(h: usize, w: usize, g: usize, rho: usize, pix: usize) -> usize {
    let (rh, rw) = (h / g, w / g);
    ((rho / g) * rh + pix / rw) * w + (rho % g) * rw + pix % rw
}

/// The gathered shape [N·R·heads, k·w2, C/heads] and every (gathered, source) index pair of
/// x [N, C, H, W] gathered by idx [N][R][k] (`ops::regions`).
fn gather_pairs(
    x_shape: &[usize],
    idx: &[Vec<Vec<usize>>],
    g: usize,
    heads: usize,
) -> ([usize; 3], Vec<(usize, usize)>) {
    let [_, c, h, w] = x_shape[..] else {
        panic!("gather_regions: x must be [N, C, H, W]")
    };
    let (r_count, w2, cw) = (g * g, (h / g) * (w / g), c / heads);
    let k = idx[0][0].len();
    let mut pairs = Vec::new();
    for (b, routes) in idx.iter().enumerate() {
        for (r, route) in routes.iter().enumerate() {
            for m in 0..heads {
                for (j, &rho) in route.iter().enumerate() {
                    for pix in 0..w2 {
                        for ch in 0..cw {
                            let row = ((b * r_count + r) * heads + m) * k * w2 + j * w2 + pix;
                            let src = (b * c + m * cw + ch) * h * w + pixel(h, w, g, rho, pix);
                            pairs.push((row * cw + ch, src));
                        }
                    }
                }
            }
        }
    }
    ([idx.len() * r_count * heads, k * w2, cw], pairs)
}

/// x [N, C, H, W] -> [N·R·heads, k·w2, C/heads] gathered by idx [N][R][k] (`ops::regions`).
pub fn gather_regions(x: &Arr, idx: &[Vec<Vec<usize>>], g: usize, heads: usize) -> Arr {
    let (shape, pairs) = gather_pairs(&x.shape, idx, g, heads);
    let mut out = Arr::zeros(&shape);
    for (o, src) in pairs {
        out.data[o] = x.data[src];
    }
    out
}

/// The transpose of [`gather_regions`]: gx of `x_shape` from gy.
pub fn gather_regions_backward(
    gy: &Arr,
    idx: &[Vec<Vec<usize>>],
    x_shape: &[usize],
    g: usize,
    heads: usize,
) -> Arr {
    let (_, pairs) = gather_pairs(x_shape, idx, g, heads);
    let mut gx = Arr::zeros(x_shape);
    for (o, src) in pairs {
        gx.data[src] += gy.data[o];
    }
    gx
}

/// Per image, per region, one row: of affinities ([N][R][R]) or of routed regions ([N][R][k]).
pub type PerRegion<T> = Vec<Vec<Vec<T>>>;

/// The region means [N][R][C] of x [N, C, H, W].
fn region_means(x: &Arr, g: usize) -> PerRegion<f64> {
    let [n, c, h, w] = x.shape[..] else {
        panic!("region_means: x must be [N, C, H, W]")
    };
    let w2 = (h / g) * (w / g);
    (0..n)
        .map(|b| {
            (0..g * g)
                .map(|rho| {
                    (0..c)
                        .map(|ch| {
                            let base = (b * c + ch) * h * w;
                            let s: f64 =
                                (0..w2).map(|p| x.data[base + pixel(h, w, g, rho, p)]).sum();
                            s / w2 as f64
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// The routing of BiFormer's TopkRouting: per image and region, the affinities
/// (scale·q̄_r)·k̄_ρ to every region ρ [N][R][R], and the `topk` largest regions, largest
/// first, ties to the lower index [N][R][topk].
pub fn route_topk(
    q: &Arr,
    k: &Arr,
    g: usize,
    topk: usize,
    scale: f64,
) -> (PerRegion<f64>, PerRegion<usize>) {
    let (qm, km) = (region_means(q, g), region_means(k, g));
    let affinity: PerRegion<f64> = qm
        .iter()
        .zip(&km)
        .map(|(qs, ks)| {
            qs.iter()
                .map(|qr| {
                    ks.iter()
                        .map(|kr| qr.iter().zip(kr).map(|(a, b)| scale * a * b).sum())
                        .collect()
                })
                .collect()
        })
        .collect();
    let idx = affinity
        .iter()
        .map(|rows| {
            rows.iter()
                .map(|a| {
                    let mut order: Vec<usize> = (0..a.len()).collect();
                    order.sort_by(|&i, &j| a[j].total_cmp(&a[i]).then(i.cmp(&j)));
                    order.truncate(topk);
                    order
                })
                .collect()
        })
        .collect();
    (affinity, idx)
}

/// The probabilities softmax_s(scale·Q_t·K_s) [B, T, S].
fn probabilities(q: &Arr, k: &Arr, scale: f64) -> Arr {
    let [b, t, d] = q.shape[..] else {
        panic!("attention: Q must be [B, T, D]")
    };
    let s = k.shape[1];
    let mut p = Arr::zeros(&[b, t, s]);
    for bi in 0..b {
        for ti in 0..t {
            let row: Vec<f64> = (0..s)
                .map(|si| {
                    (0..d)
                        .map(|c| q.data[(bi * t + ti) * d + c] * k.data[(bi * s + si) * d + c])
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|a| (a - m).exp()).sum();
            for (si, a) in row.iter().enumerate() {
                p.data[(bi * t + ti) * s + si] = (a - m).exp() / z;
            }
        }
    }
    p
}

/// softmax(scale·Q Kᵀ) V per batch entry.
pub fn attention(q: &Arr, k: &Arr, v: &Arr, scale: f64) -> Arr {
    let p = probabilities(q, k, scale);
    let [b, t, s] = p.shape[..] else {
        panic!("attention: probabilities must be [B, T, S]")
    };
    let e = v.shape[2];
    let mut o = Arr::zeros(&[b, t, e]);
    for bi in 0..b {
        for ti in 0..t {
            for si in 0..s {
                let pr = p.data[(bi * t + ti) * s + si];
                for c in 0..e {
                    o.data[(bi * t + ti) * e + c] += pr * v.data[(bi * s + si) * e + c];
                }
            }
        }
    }
    o
}

/// (dQ, dK, dV) of [`attention`] at dO, through the probabilities explicitly.
pub fn attention_backward(q: &Arr, k: &Arr, v: &Arr, scale: f64, go: &Arr) -> [Arr; 3] {
    let p = probabilities(q, k, scale);
    let [b, t, d] = q.shape[..] else {
        panic!("attention: Q must be [B, T, D]")
    };
    let (s, e) = (k.shape[1], v.shape[2]);
    let (mut gq, mut gk, mut gv) = (
        Arr::zeros(&q.shape),
        Arr::zeros(&k.shape),
        Arr::zeros(&v.shape),
    );
    for bi in 0..b {
        for ti in 0..t {
            let go_t = &go.data[(bi * t + ti) * e..(bi * t + ti + 1) * e];
            let dp: Vec<f64> = (0..s)
                .map(|si| {
                    (0..e)
                        .map(|c| go_t[c] * v.data[(bi * s + si) * e + c])
                        .sum()
                })
                .collect();
            let pr = &p.data[(bi * t + ti) * s..(bi * t + ti + 1) * s];
            let mean: f64 = pr.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for si in 0..s {
                let ds = pr[si] * (dp[si] - mean) * scale;
                for c in 0..d {
                    gq.data[(bi * t + ti) * d + c] += ds * k.data[(bi * s + si) * d + c];
                    gk.data[(bi * s + si) * d + c] += ds * q.data[(bi * t + ti) * d + c];
                }
                for (c, g) in go_t.iter().enumerate() {
                    gv.data[(bi * s + si) * e + c] += pr[si] * g;
                }
            }
        }
    }
    [gq, gk, gv]
}
