//! The subgroup-sharing dense 3×3 kernels (`ops::conv::subgroup`): every variant's forward
//! (with and without bias, stride 1 and 2) and grad_x (stride 1, with and without a gradient
//! to accumulate) and grad_w (stride 1 and 2, one chunk or several) against the f64 CPU
//! reference on odd shapes, and what they refuse. Skipped,
//! with a note, on a device without `wgpu::Features::SUBGROUP` and subgroups of 8+ lanes.

mod common;
use common::subgroups::{available, grad_x_case, params, GradXCase};
use common::{assert_close, up};
use lskbb::ops::conv::depthwise_subgroup::{self, DwSgVariant, DW_SG_VARIANTS};
use lskbb::ops::conv::pointwise_subgroup::{
    self, PwVariant, PwWVariant, PW_VARIANTS, PW_W_VARIANTS,
};
use lskbb::ops::conv::subgroup::{self, FWD_VARIANTS};
use lskbb::ops::conv::subgroup_w::{self, WVariant, W_VARIANTS};
use lskbb::ops::conv::Conv2dParams;
use lskbb::reference::conv as rconv;
use lskbb::reference::{Arr, Rng, Tol};

/// Each output is an f32 sum of at most 20·9 = 180 products of values ≤ 1 in magnitude
/// (plus a bias or an accumulated gradient ≤ 1), summed in another order than the f64
/// reference (per input channel, then per kernel row). f32 rounding (eps 6e-8) accumulates
/// to ~√terms·eps relative to the sum of |terms|: ≈ 1e-6 typical and < 3e-5 worst case
/// relative to the largest output over these sizes; 1e-4 with the floor at the largest
/// |want| (as tests/conv_cpu.rs) leaves margin, while a wrong lane, halo, tap or channel
/// gives errors of O(0.1). NaN or inf fail (Tol::check).
const TOL: Tol = Tol::new(1e-4, 1.0);

/// n, cin, (h, w), cout, stride, bias.
type Case = (usize, usize, (usize, usize), usize, usize, bool);

/// Odd H and W, widths not multiples of 8 (1, 5, 9, 13,
/// 17, 23: partial tiles, and tiles whose halo lies past the edge), heights not multiples of
/// the row blocks, channel counts not multiples of 8 or 16 (1, 3, 5, 17, 20), batch 1 to 3,
/// stride 1 and 2 (odd and even inputs), a 1×1 image.
const CASES: &[Case] = &[
    (2, 3, (9, 7), 6, 1, true),
    (3, 5, (8, 11), 9, 2, false),
    (1, 16, (9, 13), 20, 1, true),
    (2, 17, (11, 17), 5, 1, false),
    (1, 4, (7, 23), 17, 2, true),
    (3, 1, (5, 9), 16, 1, false),
    (1, 2, (1, 1), 3, 1, true),
    (2, 3, (6, 5), 8, 2, true),
    (1, 6, (3, 1), 7, 1, false),
    (1, 20, (12, 10), 11, 2, false),
];

#[test]
fn forward_matches_reference() {
    if !available() {
        return;
    }
    let mut rng = Rng(31);
    for &(n, cin, (h, w), cout, s, bias) in CASES {
        let x = rng.arr(&[n, cin, h, w], 1.0);
        let wt = rng.arr(&[cout, cin, 3, 3], 0.5);
        let b = bias.then(|| rng.arr(&[cout], 0.5));
        let want = rconv::conv2d(&x, &wt, b.as_ref(), s, 1, 1, 1);
        let (tx, tw, tb) = (up(&x), up(&wt), b.as_ref().map(up));
        assert!(subgroup::applies(&tx, &tw, params(s)));
        for &v in FWD_VARIANTS {
            let y = subgroup::forward(&tx, &tw, tb.as_ref(), params(s), v).unwrap();
            let what = format!("y {v} {:?} x {:?} stride {s}", x.shape, wt.shape);
            assert_close(&what, &y, &want, TOL);
        }
    }
}

#[test]
fn grad_x_matches_reference() {
    if !available() {
        return;
    }
    let mut rng = Rng(32);
    for &(n, cin, (h, w), cout, s, _) in CASES {
        let GradXCase {
            x,
            wt,
            gy,
            acc,
            gx,
            gx_acc,
        } = grad_x_case(&mut rng, [n, cin, h, w], cout, s);
        let (tx, tw, tgy, tacc) = (up(&x), up(&wt), up(&gy), up(&acc));
        assert_eq!(subgroup::grad_x_applies(&tx, &tw, params(s)), s == 1);
        for &v in FWD_VARIANTS {
            let r = subgroup::grad_x(&tx, &tw, &tgy, None, params(s), v);
            if s != 1 {
                assert!(r.is_err(), "grad_x {v} must refuse stride {s}");
                continue;
            }
            let what = format!("grad_x {v} {:?} x {:?}", x.shape, wt.shape);
            assert_close(&what, &r.unwrap(), &gx, TOL);
            let g = subgroup::grad_x(&tx, &tw, &tgy, Some(&tacc), params(s), v).unwrap();
            assert_close(&format!("{what} + acc"), &g, &gx_acc, TOL);
        }
    }
}

/// grad_w sums n·Ho·Wo ≤ 3·12·23 = 828 products per weight (≤ 1 in magnitude) in per-lane,
/// per-chunk order: f32 rounding ~√terms·eps of the sum of |terms|, < 1e-5 of the largest
/// gradient here; TOL's 1e-4 leaves margin while a wrong tap, row or lane gives O(0.1).
#[test]
fn grad_w_matches_reference() {
    if !available() {
        return;
    }
    let mut rng = Rng(34);
    // One chunk (gw written directly) and up to a chunk per image (partial sums reduced).
    let targets = [1, 3, 64];
    for &(n, cin, (h, w), cout, s, _) in CASES {
        let x = rng.arr(&[n, cin, h, w], 1.0);
        let wt = rng.arr(&[cout, cin, 3, 3], 0.5);
        let y = rconv::conv2d(&x, &wt, None, s, 1, 1, 1);
        let gy = rng.arr(&y.shape, 1.0);
        let (_, gw, _) = rconv::conv2d_backward(&x, &wt, &gy, s, 1, 1, 1);
        let (tx, tw, tgy) = (up(&x), up(&wt), up(&gy));
        assert!(subgroup_w::applies(&tx, &tw, params(s)));
        for &v in W_VARIANTS {
            for target in targets {
                let v = WVariant { target, ..v };
                let got = subgroup_w::grad_w(&tx, &tw, &tgy, params(s), v).unwrap();
                let what = format!(
                    "grad_w {v} target {target} {:?} x {:?} s{s}",
                    x.shape, wt.shape
                );
                assert_close(&what, &got, &gw, TOL);
            }
        }
    }
}

/// Depthwise cases: n, c, (h, w), kernel size, dilation ("same" padding); `DENSE_CASES` the
/// same with Cin → Cout dense channels. Widths not
/// multiples of 8 (1, 7, 11, 17, 30) and wider and narrower than the reach, heights not
/// multiples of the row blocks and smaller than the kernel, the model's 5×5 and 7×7
/// dilation 3, a 3×3 and a 5×5 dilation 2, a 1×1 image.
/// n, channels (one or Cin → Cout), (h, w), kernel size, dilation.
type DwCase<C> = (usize, C, (usize, usize), usize, usize);
/// Widths 8, 12, 20, 28 and 36 run the variants of 2 and 4 columns per lane too: one tile,
/// a tile the map only part fills, and several tiles whose halos reach into the next.
const DW_CASES: &[DwCase<usize>] = &[
    (2, 3, (9, 7), 5, 1),
    (1, 5, (13, 17), 7, 3),
    (3, 2, (1, 1), 5, 1),
    (1, 4, (20, 11), 3, 1),
    (2, 1, (6, 30), 7, 3),
    (1, 3, (17, 9), 5, 2),
    (2, 3, (9, 8), 5, 1),
    (1, 2, (7, 36), 7, 3),
    (2, 2, (5, 20), 7, 3),
    (1, 3, (6, 12), 3, 1),
    (1, 2, (11, 28), 5, 2),
];
const DENSE_CASES: &[DwCase<(usize, usize)>] = &[
    (2, (2, 2), (9, 13), 7, 1),
    (1, (3, 1), (8, 5), 5, 1),
    (2, (1, 4), (11, 7), 3, 1),
    (1, (4, 3), (16, 9), 7, 3),
    (2, (2, 2), (9, 16), 7, 1),
    (1, (2, 3), (5, 36), 7, 1),
];

/// Each output sums at most 4·49 products of values ≤ 1 (plus a bias or gradient ≤ 1), each
/// weight gradient at most 2·20·11 = 440 (the tests' largest planes): f32
/// rounding stays below 1e-6 of the largest output; TOL leaves margin while a wrong tap,
/// lane or row gives O(0.1).
#[test]
fn depthwise_and_few_channel_forward_and_grad_x_match_reference() {
    if !available() {
        return;
    }
    let mut rng = Rng(35);
    let depthwise = DW_CASES
        .iter()
        .map(|&(n, c, hw, ks, dil)| (n, (c, c), hw, ks, dil, c));
    let dense = DENSE_CASES
        .iter()
        .map(|&(n, cs, hw, ks, dil)| (n, cs, hw, ks, dil, 1));
    for (n, (cin, cout), (h, w), ks, dil, groups) in depthwise.chain(dense) {
        let pad = (ks - 1) * dil / 2;
        let p = Conv2dParams {
            padding: pad,
            dilation: dil,
            groups,
            ..Default::default()
        };
        let x = rng.arr(&[n, cin, h, w], 1.0);
        let wt = rng.arr(&[cout, cin / groups, ks, ks], 0.5);
        let b = rng.arr(&[cout], 0.5);
        let gy = rng.arr(&[n, cout, h, w], 1.0);
        let acc = rng.arr(&[n, cin, h, w], 1.0);
        let y = rconv::conv2d(&x, &wt, Some(&b), 1, pad, dil, groups);
        let (gx, gw, gb) = rconv::conv2d_backward(&x, &wt, &gy, 1, pad, dil, groups);
        let gx_acc: Arr = gx.zip(&acc, |a, b| a + b);
        let (tx, tw, tb, tgy, tacc) = (up(&x), up(&wt), up(&b), up(&gy), up(&acc));
        assert!(depthwise_subgroup::applies(&tx, &tw, p));
        // grad_w with and without the bias, in one chunk per channel pair and in up to one
        // per (image, tile).
        let fitting = || DW_SG_VARIANTS.iter().copied().filter(|v| v.fits(w));
        for v in fitting() {
            for (target, bias) in [(1, true), (1000, false), (1000, true)] {
                let what = format!("gw {v} target {target} {:?} {ks}x{ks} d{dil}", x.shape);
                let (w_got, b_got) =
                    depthwise_subgroup::grad_wb(&tx, &tw, &tgy, bias, p, v, target).unwrap();
                assert_close(&what, &w_got, &gw, TOL);
                assert_eq!(b_got.is_some(), bias);
                if let Some(b_got) = b_got {
                    assert_close(&format!("gb {what}"), &b_got, &gb, TOL);
                }
            }
        }
        for v in fitting() {
            let what = format!("{v} {:?} w {:?} d{dil} groups {groups}", x.shape, wt.shape);
            let got = depthwise_subgroup::forward(&tx, &tw, Some(&tb), p, v).unwrap();
            assert_close(&format!("y {what}"), &got, &y, TOL);
            let got = depthwise_subgroup::grad_x(&tx, &tw, &tgy, None, p, v).unwrap();
            assert_close(&format!("gx {what}"), &got, &gx, TOL);
            let got = depthwise_subgroup::grad_x(&tx, &tw, &tgy, Some(&tacc), p, v).unwrap();
            assert_close(&format!("gx + acc {what}"), &got, &gx_acc, TOL);
        }
    }
}

/// 1×1 cases: n, cin, cout, (h, w): planes of 1 to 221 pixels (not multiples of 8 or of a
/// workgroup's 8·P), channel counts not multiples of 8 or 16; planes of 24, 32, 60 and 144
/// pixels run the variants of 4 pixels per lane too (one run partly filled, one full run,
/// runs past the plane's end).
const PW_CASES: &[(usize, usize, usize, (usize, usize))] = &[
    (2, 3, 5, (9, 7)),
    (1, 17, 9, (13, 17)),
    (3, 2, 20, (1, 1)),
    (1, 8, 33, (4, 6)),
    (2, 5, 9, (4, 8)),
    (1, 17, 20, (6, 10)),
    (2, 9, 16, (12, 12)),
];

/// Each output sums at most 33 products of values ≤ 1 (plus a bias or gradient ≤ 1), each
/// weight gradient at most 3·221 = 663: f32 rounding stays below 1e-5 of the largest value;
/// TOL leaves margin.
#[test]
fn pointwise_forward_and_grad_x_match_reference() {
    if !available() {
        return;
    }
    let mut rng = Rng(37);
    let p = Conv2dParams {
        padding: 0,
        ..Default::default()
    };
    for &(n, cin, cout, (h, w)) in PW_CASES {
        let x = rng.arr(&[n, cin, h, w], 1.0);
        let wt = rng.arr(&[cout, cin, 1, 1], 0.5);
        let b = rng.arr(&[cout], 0.5);
        let gy = rng.arr(&[n, cout, h, w], 1.0);
        let acc = rng.arr(&[n, cin, h, w], 1.0);
        let y = rconv::conv2d(&x, &wt, Some(&b), 1, 0, 1, 1);
        let (gx, gw, gb) = rconv::conv2d_backward(&x, &wt, &gy, 1, 0, 1, 1);
        let gx_acc: Arr = gx.zip(&acc, |a, b| a + b);
        let (tx, tw, tb, tgy, tacc) = (up(&x), up(&wt), up(&b), up(&gy), up(&acc));
        assert!(pointwise_subgroup::applies(&tx, &tw, p));
        // One chunk (gw written directly when there is no bias) and a chunk per image
        // (partial sums reduced), with and without the bias.
        let hw = h * w;
        for v in PW_W_VARIANTS.iter().filter(|v| hw.is_multiple_of(v.c)) {
            for (target, bias) in [(1, false), (1, true), (64, false), (64, true)] {
                let v = PwWVariant { target, ..*v };
                let (w_got, b_got) =
                    pointwise_subgroup::grad_wb(&tx, &tw, &tgy, bias, p, v).unwrap();
                let what = format!("{v} target {target} {:?} w {:?}", x.shape, wt.shape);
                assert_close(&format!("gw {what}"), &w_got, &gw, TOL);
                assert_eq!(b_got.is_some(), bias);
                if let Some(b_got) = b_got {
                    assert_close(&format!("gb {what}"), &b_got, &gb, TOL);
                }
            }
        }
        for v in PW_VARIANTS.iter().filter(|v| hw.is_multiple_of(v.c)) {
            let what = format!("{v} {:?} w {:?}", x.shape, wt.shape);
            let got = pointwise_subgroup::forward(&tx, &tw, Some(&tb), p, *v).unwrap();
            assert_close(&format!("y {what}"), &got, &y, TOL);
            let got = pointwise_subgroup::grad_x(&tx, &tw, &tgy, None, p, *v).unwrap();
            assert_close(&format!("gx {what}"), &got, &gx, TOL);
            let got = pointwise_subgroup::grad_x(&tx, &tw, &tgy, Some(&tacc), p, *v).unwrap();
            assert_close(&format!("gx + acc {what}"), &got, &gx_acc, TOL);
        }
    }
    let x = up(&rng.arr(&[1, 4, 5, 5], 1.0));
    let w1 = up(&rng.arr(&[4, 4, 1, 1], 1.0));
    let w3 = up(&rng.arr(&[4, 4, 3, 3], 1.0));
    for (w, q) in [
        (&w3, params(1)),
        (&w1, params(1)),
        (&w1, Conv2dParams { stride: 2, ..p }),
    ] {
        assert!(!pointwise_subgroup::applies(&x, w, q), "{q:?}");
        assert!(pointwise_subgroup::forward(&x, w, None, q, PW_VARIANTS[0]).is_err());
    }
    let odd = PwVariant { k: 12, p: 2, c: 1 };
    assert!(pointwise_subgroup::forward(&x, &w1, None, p, odd).is_err());
    // Four pixels per lane on a plane of 25.
    let wide = PwVariant { k: 8, p: 2, c: 4 };
    let err = pointwise_subgroup::forward(&x, &w1, None, p, wide).unwrap_err();
    assert!(err.to_string().contains("25 pixels"), "{err}");
}

#[test]
fn depthwise_refuses_other_convolutions() {
    if !available() {
        return;
    }
    let mut rng = Rng(36);
    let x = up(&rng.arr(&[1, 4, 9, 9], 1.0));
    let w5 = up(&rng.arr(&[4, 1, 5, 5], 1.0));
    let w4 = up(&rng.arr(&[4, 1, 4, 4], 1.0));
    let w9 = up(&rng.arr(&[4, 1, 9, 9], 1.0));
    let dw = |padding, dilation, stride| Conv2dParams {
        padding,
        dilation,
        stride,
        groups: 4,
    };
    let bad = [
        (&w5, dw(1, 1, 1)),  // not "same" padding
        (&w5, dw(2, 1, 2)),  // stride 2
        (&w4, dw(2, 1, 1)),  // even kernel
        (&w9, dw(16, 4, 1)), // reach 32 > 24
    ];
    for (w, p) in bad {
        assert!(!depthwise_subgroup::applies(&x, w, p), "{p:?}");
        let v = DW_SG_VARIANTS[0];
        assert!(
            depthwise_subgroup::forward(&x, w, None, p, v).is_err(),
            "{p:?}"
        );
    }
    // Four or two columns per lane on a map 9 wide.
    for c in [2, 4] {
        let v = DwSgVariant { p: 8, c };
        let err = depthwise_subgroup::forward(&x, &w5, None, dw(2, 1, 1), v).unwrap_err();
        assert!(err.to_string().contains("width 9"), "{err}");
    }
    let dense = up(&rng.arr(&[4, 4, 5, 5], 1.0));
    assert!(!depthwise_subgroup::applies(&x, &dense, params(1)));
    // Dense with more than 4 channels.
    let x5 = up(&rng.arr(&[1, 5, 9, 9], 1.0));
    let w55 = up(&rng.arr(&[5, 5, 3, 3], 1.0));
    assert!(!depthwise_subgroup::applies(&x5, &w55, params(1)));
    assert!(depthwise_subgroup::forward(&x5, &w55, None, params(1), DW_SG_VARIANTS[0]).is_err());
}

#[test]
fn refuses_other_convolutions() {
    if !available() {
        return;
    }
    let mut rng = Rng(33);
    let x = up(&rng.arr(&[1, 4, 6, 6], 1.0));
    let w3 = up(&rng.arr(&[4, 4, 3, 3], 1.0));
    let w1 = up(&rng.arr(&[4, 4, 1, 1], 1.0));
    let wg = up(&rng.arr(&[4, 2, 3, 3], 1.0));
    let v = FWD_VARIANTS[0];
    let bad = [
        (&w1, params(1)),
        (
            &w3,
            Conv2dParams {
                padding: 0,
                ..params(1)
            },
        ),
        (
            &w3,
            Conv2dParams {
                stride: 3,
                ..params(1)
            },
        ),
        (
            &w3,
            Conv2dParams {
                dilation: 2,
                padding: 2,
                ..params(1)
            },
        ),
        (
            &wg,
            Conv2dParams {
                groups: 2,
                ..params(1)
            },
        ),
    ];
    for (w, p) in bad {
        assert!(!subgroup::applies(&x, w, p), "{p:?}");
        assert!(subgroup::forward(&x, w, None, p, v).is_err(), "{p:?}");
    }
    for (w, p) in bad {
        assert!(!subgroup_w::applies(&x, w, p), "{p:?}");
        let gy = up(&rng.arr(&[1, w.shape()[0], 6, 6], 1.0));
        assert!(
            subgroup_w::grad_w(&x, w, &gy, p, W_VARIANTS[0]).is_err(),
            "{p:?}"
        );
    }
    let odd = subgroup::FwdVariant { k: 12, p: 2 };
    assert!(subgroup::forward(&x, &w3, None, params(1), odd).is_err());
}
