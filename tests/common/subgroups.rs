//! Shared by the subgroup convolution tests (tests/conv_subgroup*.rs, tests/conv_winograd_rows.rs):
//! parameters, the device check, and the row kernels' forward and grad_x checks.

use super::{assert_close, gpu, up};
use anyhow::Result;
use lskbb::ops::conv::subgroup_rows::RowsVariant;
use lskbb::ops::conv::{subgroup, Conv2dParams};
use lskbb::reference::conv as rconv;
use lskbb::reference::{Arr, Rng, Tol};
use lskbb::Tensor;

/// A 3×3 convolution's parameters: padding 1 at `stride`.
pub fn params(stride: usize) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding: 1,
        ..Default::default()
    }
}

/// Whether the device runs the subgroup kernels; prints a note when not.
pub fn available() -> bool {
    let ok = subgroup::supported(&gpu());
    if !ok {
        eprintln!("skipped: the adapter lacks wgpu::Features::SUBGROUP with 8+ lane subgroups");
    }
    ok
}

/// n, cin, (h, w), cout, bias: a case of the row kernels' tables.
pub type RowsCase = (usize, usize, (usize, usize), usize, bool);

/// A row family's `applies` or `grad_x_applies`.
pub type Applies = fn(&Tensor, &Tensor, Conv2dParams) -> bool;

/// A row family's forward (`subgroup_rows::forward`, `winograd_rows::forward`).
pub type RowsForward =
    fn(&Tensor, &Tensor, Option<&Tensor>, Conv2dParams, RowsVariant) -> Result<Tensor>;

/// A row family's grad_x.
pub type RowsGradX =
    fn(&Tensor, &Tensor, &Tensor, Option<&Tensor>, Conv2dParams, RowsVariant) -> Result<Tensor>;

/// Every case's forward (with its bias or none) on every variant against the f64 reference;
/// `applies` must hold for each.
pub fn check_rows_forward(
    family: &str,
    cases: &[RowsCase],
    variants: &[RowsVariant],
    (applies, forward): (Applies, RowsForward),
    tol: Tol,
    seed: u64,
) {
    let mut rng = Rng(seed);
    for &(n, cin, (h, w), cout, bias) in cases {
        let x = rng.arr(&[n, cin, h, w], 1.0);
        let wt = rng.arr(&[cout, cin, 3, 3], 0.5);
        let b = bias.then(|| rng.arr(&[cout], 0.5));
        let want = rconv::conv2d(&x, &wt, b.as_ref(), 1, 1, 1, 1);
        let (tx, tw, tb) = (up(&x), up(&wt), b.as_ref().map(up));
        assert!(applies(&tx, &tw, params(1)), "{family} {:?}", x.shape);
        for &v in variants {
            let y = forward(&tx, &tw, tb.as_ref(), params(1), v).unwrap();
            let what = format!("{family} y {v} {:?} x {:?}", x.shape, wt.shape);
            assert_close(&what, &y, &want, tol);
        }
    }
}

/// A dense 3×3 grad_x case on the f64 reference: x [n, cin, h, w], weights [cout, cin, 3, 3],
/// a random gy of the stride-`s` output, a random gradient `acc` of x's shape, and gx alone
/// and plus acc.
pub struct GradXCase {
    pub x: Arr,
    pub wt: Arr,
    pub gy: Arr,
    pub acc: Arr,
    pub gx: Arr,
    pub gx_acc: Arr,
}

/// Draws a [`GradXCase`] from `rng` (x, the weights, gy, then acc).
pub fn grad_x_case(rng: &mut Rng, shape: [usize; 4], cout: usize, s: usize) -> GradXCase {
    let x = rng.arr(&shape, 1.0);
    let wt = rng.arr(&[cout, shape[1], 3, 3], 0.5);
    let y = rconv::conv2d(&x, &wt, None, s, 1, 1, 1);
    let gy = rng.arr(&y.shape, 1.0);
    let (gx, _, _) = rconv::conv2d_backward(&x, &wt, &gy, s, 1, 1, 1);
    let acc = rng.arr(&x.shape, 1.0);
    let gx_acc = gx.zip(&acc, |a, b| a + b);
    GradXCase {
        x,
        wt,
        gy,
        acc,
        gx,
        gx_acc,
    }
}

/// Every case's grad_x at strides 1 and 2 (gy spread onto x's grid; odd heights: the last
/// row has no output below it), alone and added to a gradient `acc`, on every variant against
/// the f64 reference; `grad_x_applies` must hold at both strides, `applies` at stride 1 only.
pub fn check_rows_grad_x(
    family: &str,
    cases: &[RowsCase],
    variants: &[RowsVariant],
    (applies, grad_x_applies, grad_x): (Applies, Applies, RowsGradX),
    tol: Tol,
    seed: u64,
) {
    let mut rng = Rng(seed);
    for (&(n, cin, (h, w), cout, _), s) in cases.iter().flat_map(|c| [(c, 1), (c, 2)]) {
        let GradXCase {
            x,
            wt,
            gy,
            acc,
            gx,
            gx_acc,
        } = grad_x_case(&mut rng, [n, cin, h, w], cout, s);
        let (tx, tw, tgy, tacc) = (up(&x), up(&wt), up(&gy), up(&acc));
        let p = params(s);
        assert!(grad_x_applies(&tx, &tw, p), "{family} {:?}", x.shape);
        assert_eq!(applies(&tx, &tw, p), s == 1, "{family} {:?}", x.shape);
        for &v in variants {
            let what = format!("{family} gx {v} {:?} x {:?} stride {s}", x.shape, wt.shape);
            let g = grad_x(&tx, &tw, &tgy, None, p, v).unwrap();
            assert_close(&what, &g, &gx, tol);
            let g = grad_x(&tx, &tw, &tgy, Some(&tacc), p, v).unwrap();
            assert_close(&format!("{what} + acc"), &g, &gx_acc, tol);
        }
    }
}
