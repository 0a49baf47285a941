//! BiFormer's regions (`shaders/regions.wgsl`): the gather of routed regions and its transpose
//! against the f64 reference on odd shapes, the inverse of gathering every region's own
//! pixels, and the top-k routing (its choice against the reference's, and its tie rule).

mod common;

use common::{assert_close, backprop, gpu, up};
use lskbb::ops::regions::{gather_regions, route_topk, ungather_regions, Regions, Routes};
use lskbb::reference::attention as ra;
use lskbb::reference::{Arr, Rng, Tol};
use lskbb::{Tensor, Var};

/// A sum of up to R·k gradient entries per element, in f32.
const TOL_SCATTER: Tol = Tol::new(1e-6, 0.1);

/// (N, C, H, W, grid, heads, k): one region, non-square maps and regions, heads of 1 to 4
/// channels, every region routed everywhere, and BiFormer's 7×7 grid.
const CASES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 2, 2, 1, 1, 1),
    (2, 6, 6, 9, 3, 2, 4),
    (3, 8, 8, 8, 4, 4, 16),
    (1, 5, 14, 7, 7, 5, 3),
];

/// Random routing indices [N][R][k], each region's k distinct (as top-k's are), in random
/// order.
fn random_idx(rng: &mut Rng, n: usize, regions: usize, k: usize) -> Vec<Vec<Vec<usize>>> {
    (0..n)
        .map(|_| {
            (0..regions)
                .map(|_| {
                    let mut all: Vec<usize> = (0..regions).collect();
                    for i in (1..regions).rev() {
                        all.swap(i, rng.next_u64() as usize % (i + 1));
                    }
                    all.truncate(k);
                    all
                })
                .collect()
        })
        .collect()
}

fn upload_idx(idx: &[Vec<Vec<usize>>]) -> Routes {
    let flat: Vec<u32> = idx.iter().flatten().flatten().map(|&i| i as u32).collect();
    let shape = [idx.len(), idx[0].len(), idx[0][0].len()];
    Routes::from_indices(Tensor::from_u32(&gpu(), &flat, &shape).unwrap())
}

#[test]
fn gather_and_its_transpose_match_reference() {
    let mut rng = Rng(81);
    for &(n, c, h, w, g, heads, k) in CASES {
        let x = rng.arr(&[n, c, h, w], 1.0);
        let idx = random_idx(&mut rng, n, g * g, k);
        let r = Regions { grid: g, heads };
        let what = format!("gather {n}x{c}x{h}x{w} grid {g} heads {heads} k {k}");
        let vx = Var::param(up(&x));
        let y = gather_regions(&vx, &upload_idx(&idx), r).unwrap();
        let want = ra::gather_regions(&x, &idx, g, heads);
        assert_close(&what, y.value(), &want, Tol::EXACT);
        let gy = rng.arr(&want.shape, 1.0);
        backprop(&y, &gy);
        let gx = ra::gather_regions_backward(&gy, &idx, &x.shape, g, heads);
        assert_close(&format!("{what} gx"), &vx.grad().unwrap(), &gx, TOL_SCATTER);
    }
}

#[test]
fn ungathering_own_regions_restores_the_map() {
    let mut rng = Rng(82);
    for &(n, c, h, w, g, heads, _) in CASES {
        let x = rng.arr(&[n, c, h, w], 1.0);
        let r = Regions { grid: g, heads };
        let own = Routes::own(&gpu(), n, r).unwrap();
        let y = gather_regions(&Var::constant(up(&x)), &own, r).unwrap();
        let vy = Var::param(y.value().clone());
        let back = ungather_regions(&vy, &x.shape, r).unwrap();
        assert_close("ungather(gather(x))", back.value(), &x, Tol::EXACT);
        let gx = rng.arr(&x.shape, 1.0);
        backprop(&back, &gx);
        let want = ra::gather_regions(
            &gx,
            &vec![(0..g * g).map(|i| vec![i]).collect(); n],
            g,
            heads,
        );
        assert_close("ungather backward", &vy.grad().unwrap(), &want, Tol::EXACT);
    }
}

#[test]
fn routing_picks_the_reference_top_k() {
    let mut rng = Rng(83);
    for &(n, c, h, w, g, _, k) in CASES {
        let q = rng.arr(&[n, c, h, w], 1.0);
        let kk = rng.arr(&[n, c, h, w], 1.0);
        let scale = 1.0 / (c as f64).sqrt();
        let r = Regions { grid: g, heads: 1 };
        let got = route_topk(&up(&q), &up(&kk), r, k, scale as f32).unwrap();
        assert_eq!(got.indices().shape(), [n, g * g, k]);
        let got: Vec<u32> = got.indices().to_u32().unwrap();
        let (affinity, want) = ra::route_topk(&q, &kk, g, k, scale);
        // f32 region means and dot products against f64: where two affinities are closer
        // than their rounding (≈ 1e-6 of the largest) either order is right, so each chosen
        // region's affinity must equal the reference's at that rank to 1e-5 of the largest.
        for b in 0..n {
            for rr in 0..g * g {
                let a = &affinity[b][rr];
                let largest = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
                for j in 0..k {
                    let chosen = got[(b * g * g + rr) * k + j] as usize;
                    let gap = (a[chosen] - a[want[b][rr][j]]).abs() / largest;
                    assert!(
                        gap <= 1e-5,
                        "image {b} region {rr} rank {j}: chose {chosen}, reference {:?}",
                        want[b][rr]
                    );
                }
            }
        }
    }
}

/// Equal affinities (constant maps) keep the lower region first, as the reference's order.
#[test]
fn routing_ties_go_to_the_lower_region() {
    let (n, c, h, w, g, k) = (2, 3, 6, 6, 3, 4);
    let ones = Arr::new(&[n, c, h, w], vec![0.5; n * c * h * w]);
    let r = Regions { grid: g, heads: 1 };
    let got = route_topk(&up(&ones), &up(&ones), r, k, 1.0).unwrap();
    let got: Vec<u32> = got.indices().to_u32().unwrap();
    for row in got.chunks(k) {
        assert_eq!(row, [0, 1, 2, 3]);
    }
    let (_, want) = ra::route_topk(&ones, &ones, g, k, 1.0);
    assert_eq!(want[0][0], [0, 1, 2, 3]);
}

#[test]
fn regions_reject_grids_and_heads_that_do_not_divide() {
    let x = Var::constant(up(&Rng(84).arr(&[1, 6, 6, 9], 1.0)));
    let idx = Routes::own(&gpu(), 1, Regions { grid: 4, heads: 1 }).unwrap();
    let err = gather_regions(&x, &idx, Regions { grid: 4, heads: 1 })
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("does not divide the 6x9 map"),
        "{err:#}"
    );
    let idx = Routes::own(&gpu(), 1, Regions { grid: 3, heads: 4 }).unwrap();
    let err = gather_regions(&x, &idx, Regions { grid: 3, heads: 4 })
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("4 heads do not divide 6 channels"),
        "{err:#}"
    );
}
