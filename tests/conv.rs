//! 2-D convolution: GPU forward and backward against the f64 CPU reference and the PyTorch
//! golden file, finite-difference checks of the reference, shape validation.

mod common;
use common::{assert_close, down, gpu, up};
use lskbb::ops::conv::depthwise::Depthwise;
use lskbb::ops::conv::{
    conv2d, conv2d_backward, conv2d_backward_with, conv2d_forward, conv2d_forward_with,
    conv2d_grad_x_with, Conv2dParams, ConvAlgo,
};
use lskbb::ops::{elementwise as ew, reduce};
use lskbb::reference::conv as rconv;
use lskbb::reference::{dot, finite_diff_check, Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{backward, AdapterChoice, Gpu, Tensor, Var};
use std::path::Path;
use std::sync::Arc;

/// Every output is an f32 sum of at most K·K·Cin/groups ≤ 196 products (forward, grad_x) or
/// N·Ho·Wo ≤ 4620 products (grad_w, grad_b) of values ≤ 1 in magnitude; f32 rounding
/// (eps 6e-8) accumulates to ~√terms·eps relative to sums of magnitude ~√terms, ≈ 4e-6
/// typical and < 3e-5 worst case over these sizes, so 1e-4 relative leaves margin without
/// hiding index bugs (which give O(0.1) errors). Entries whose terms cancel keep the absolute
/// error of the partial sums, ≲ √4620·2⁻²⁴·max|y| ≈ 4e-6·max|y|, which 1e-4 meets at
/// 5e-2·max|y|: smaller entries are held to that level.
const TOL: Tol = Tol::new(1e-4, 5e-2);

/// The PyTorch goldens are float64 results of the same float32 inputs rounded to f32; sums
/// of at most 7·7·1 (depthwise) or 3·3·4 terms, or 2·11·11 for grad_w: the same argument as
/// TOL gives ≤ 1e-5, plus one f32 rounding of the stored value (6e-8); entries that cancel
/// carry ≲ √242·2⁻²⁴·max|y| ≈ 1e-6·max|y|, which 1e-4 meets at 1e-2·max|y|.
const GOLDEN_TOL: Tol = Tol::new(1e-4, 1e-2);

/// The reference's loss ⟨y, gy⟩ is bilinear, so central differences are exact up to f64
/// rounding of sums of ~100 terms divided by 2h = 2e-6: ≈ 1e-16·100/1e-6 = 1e-8.
const FD_TOL: f64 = 1e-6;

struct Case {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
    bias: bool,
}

const fn case(
    n: usize,
    cin: usize,
    (h, w): (usize, usize),
    cout: usize,
    (kh, kw): (usize, usize),
    (stride, padding, dilation, groups): (usize, usize, usize, usize),
    bias: bool,
) -> Case {
    Case {
        n,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        stride,
        padding,
        dilation,
        groups,
        bias,
    }
}

/// Dense 3×3 (tiled forward, 6 = 4 + 2 channels), stride 2 with batch 3, the LSK depthwise
/// 5×5 pad 2 and 7×7 dilation 3 pad 9, 1×1 (tiled grad_x), a 7×7 stride-2 stem, grouped with
/// dilation 2 and stride 2, a non-square kernel, stride 3 that skips input pixels (their
/// grad_x must be zero), a 1×1 output, and depthwise and grouped convolutions whose N·Ho·Wo
/// (over 4096) splits the direct grad_w kernels' reductions into chunks.
const CASES: &[Case] = &[
    case(2, 3, (9, 7), 6, (3, 3), (1, 1, 1, 1), true),
    case(3, 5, (8, 11), 4, (3, 3), (2, 1, 1, 1), false),
    case(1, 6, (11, 13), 6, (5, 5), (1, 2, 1, 6), true),
    case(2, 4, (13, 12), 4, (7, 7), (1, 9, 3, 4), true),
    case(3, 8, (5, 6), 9, (1, 1), (1, 0, 1, 1), true),
    case(1, 3, (10, 9), 5, (7, 7), (2, 3, 1, 1), false),
    case(2, 8, (7, 9), 6, (3, 3), (2, 1, 2, 2), true),
    case(1, 4, (6, 5), 5, (3, 1), (1, 1, 1, 1), false),
    case(2, 5, (8, 8), 8, (2, 2), (3, 0, 1, 1), true),
    case(3, 4, (3, 3), 7, (3, 3), (1, 0, 1, 1), true),
    case(2, 4, (48, 47), 4, (5, 5), (1, 2, 1, 4), true),
    case(1, 8, (70, 66), 8, (3, 3), (1, 1, 1, 2), false),
];

fn params(c: &Case) -> Conv2dParams {
    Conv2dParams {
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
        groups: c.groups,
    }
}

/// Runs `c` on the kernels of `algo` against the f64 reference: y, grad_x, grad_w, grad_b,
/// and grad_x with a gradient from elsewhere added in its store.
fn check_case(rng: &mut Rng, c: &Case, algo: ConvAlgo, tol: Tol) {
    let p = params(c);
    let x = rng.arr(&[c.n, c.cin, c.h, c.w], 1.0);
    let w = rng.arr(&[c.cout, c.cin / c.groups, c.kh, c.kw], 0.5);
    let b = c.bias.then(|| rng.arr(&[c.cout], 0.5));
    let (s, pd, d, g) = (c.stride, c.padding, c.dilation, c.groups);
    let want = rconv::conv2d(&x, &w, b.as_ref(), s, pd, d, g);
    let (tx, tw) = (up(&x), up(&w));
    let tb = b.as_ref().map(up);
    let y = conv2d_forward_with(&tx, &tw, tb.as_ref(), p, algo).unwrap();
    let name = format!("{algo:?} {:?} x {:?} {p:?}", x.shape, w.shape);
    assert_close(&format!("y {name}"), &y, &want, tol);
    let gy = rng.arr(&want.shape, 1.0);
    let (wx, ww, wb) = rconv::conv2d_backward(&x, &w, &gy, s, pd, d, g);
    let (gx, gw, gb) = conv2d_backward_with(&tx, &tw, c.bias, &up(&gy), p, algo).unwrap();
    assert_close(&format!("grad_x {name}"), &gx, &wx, tol);
    assert_close(&format!("grad_w {name}"), &gw, &ww, tol);
    assert_eq!(gb.is_some(), c.bias, "grad_b presence {name}");
    if let Some(gb) = gb {
        assert_close(&format!("grad_b {name}"), &gb, &wb, tol);
    }
    let acc = rng.arr(&x.shape, 1.0);
    let gx = conv2d_grad_x_with(&tx, &tw, &up(&gy), Some(&up(&acc)), p, algo).unwrap();
    let want = wx.zip(&acc, |a, b| a + b);
    assert_close(&format!("grad_x + acc {name}"), &gx, &want, tol);
}

/// Every case on the default kernels (GEMM when dense), and the dense ones on the direct
/// kernels too.
#[test]
fn conv2d_forward_and_backward_match_reference() {
    let mut rng = Rng(11);
    for c in CASES {
        check_case(&mut rng, c, ConvAlgo::Auto, TOL);
        if c.groups == 1 {
            check_case(&mut rng, c, ConvAlgo::Direct, TOL);
        }
    }
}

/// grad_w sums up to N·Ho·Wo = 2·48·47 ≈ 4500 products here (split over up to 18 chunks) and
/// the forward up to 65·9 = 585: the TOL argument gives √4500·6e-8·|terms| ≲ 5e-5 typical
/// relative to sums whose magnitude is ~√terms, so 2e-4 keeps the margin; entries that cancel
/// carry ≲ √4800·2⁻²⁴·max|y| ≈ 4e-6·max|y|, which 2e-4 meets at 2e-2·max|y|.
const GEMM_TOL: Tol = Tol::new(2e-4, 2e-2);

/// Shapes at the GEMM tile boundaries (tiles 256×16, 128×32, 64×64; K steps of 8; grad_w
/// split-K chunks of 256): M, N and K not multiples of the tiles, Cout 17 and 65 (several
/// N tiles), stride 2, Cin 3 (K = 27), batch 1, 1×1 and 7×7 dense, dilation, a 1×1 output,
/// grad_x stride phases with dilation (gcd of stride and dilation 1 and 2) and stride 4, and
/// grad_w reductions long enough to split (into more than 16 chunks in the last case).
const GEMM_CASES: &[Case] = &[
    case(1, 3, (13, 11), 16, (3, 3), (1, 1, 1, 1), true),
    case(2, 16, (29, 31), 16, (3, 3), (1, 1, 1, 1), false),
    case(3, 17, (9, 10), 33, (3, 3), (2, 1, 1, 1), true),
    case(1, 65, (7, 6), 65, (3, 3), (1, 1, 1, 1), false),
    case(2, 5, (11, 9), 70, (1, 1), (1, 0, 1, 1), true),
    case(1, 33, (10, 7), 31, (1, 1), (2, 0, 1, 1), false),
    case(2, 2, (15, 14), 2, (7, 7), (1, 3, 1, 1), true),
    case(1, 3, (16, 17), 16, (7, 7), (2, 3, 1, 1), false),
    case(2, 6, (12, 12), 9, (3, 3), (1, 2, 2, 1), true),
    case(1, 7, (3, 3), 5, (3, 3), (1, 0, 1, 1), false),
    case(2, 4, (11, 10), 6, (3, 3), (2, 2, 2, 1), false),
    case(1, 3, (13, 12), 5, (3, 3), (2, 3, 3, 1), true),
    case(1, 2, (14, 13), 3, (3, 3), (4, 2, 2, 1), false),
    case(2, 2, (48, 47), 3, (3, 3), (1, 1, 1, 1), true),
];

#[test]
fn conv2d_gemm_boundary_shapes_match_reference() {
    let mut rng = Rng(14);
    for c in GEMM_CASES {
        check_case(&mut rng, c, ConvAlgo::Gemm, GEMM_TOL);
    }
}

/// Stride-1 depthwise shapes for the tiled kernels (tiles of at most 32 × 32 outputs, a source
/// window of at most 2560 values, several whole small planes per workgroup), with whether
/// they fit them: the LSK 5×5 pad 2 and 7×7 dilation 3 pad 9 on planes of several tiles with
/// partial edge tiles, small planes several to a workgroup with the last workgroup part
/// empty (on 4×5 planes the 7×7 dilation-3 tiles skip the two outer taps on each side), a
/// non-square dilated kernel, padding wider than the kernel (grad_x offset < 0),
/// no padding, a 1×1 kernel, a wide plane of one tile row, and kernels too large for the
/// tiles (17×17: 289 taps; 9×9 dilation 5 on a 64-wide plane: no window row fits), which
/// fall back to the direct kernels. The flags: whether the tiles fit, whether forward and
/// grad_x also fit the strip tiles (4 output rows `dil` apart per thread, at least 128 busy threads): planes
/// of several tiles whose last tiles cut strips short, 17 and 3 small planes to a workgroup
/// (5×5 on 6×7, the dilated 3×5), a 1×1 kernel; not the small planes that leave most
/// threads idle (dilated 7×7 on 8×8 and 4×5, 3×3 padding 3 on 9×10 for grad_x, 5×5 without
/// padding on 11×9) nor the 3-row plane; whether grad_w fits its strip tiles (planes at
/// least 16 wide: 5×5 and dilated 7×7 with cut tiles, 1×1, and 3 rows of 100).
const DEPTHWISE_CASES: &[(Case, [bool; 3])] = &[
    (
        case(2, 3, (70, 45), 3, (5, 5), (1, 2, 1, 3), true),
        [true, true, true],
    ),
    (
        case(2, 2, (40, 37), 2, (7, 7), (1, 9, 3, 2), true),
        [true, true, true],
    ),
    (
        case(3, 5, (8, 8), 5, (7, 7), (1, 9, 3, 5), true),
        [true, false, false],
    ),
    (
        case(2, 3, (4, 5), 3, (7, 7), (1, 9, 3, 3), false),
        [true, false, false],
    ),
    (
        case(4, 7, (6, 7), 7, (5, 5), (1, 2, 1, 7), false),
        [true, true, false],
    ),
    (
        case(2, 3, (12, 19), 3, (3, 5), (1, 1, 2, 3), true),
        [true, true, false],
    ),
    (
        case(1, 4, (9, 10), 4, (3, 3), (1, 3, 1, 4), false),
        [true, false, false],
    ),
    (
        case(2, 3, (11, 9), 3, (5, 5), (1, 0, 1, 3), true),
        [true, false, false],
    ),
    (
        case(2, 6, (33, 34), 6, (1, 1), (1, 0, 1, 6), true),
        [true, true, true],
    ),
    (
        case(1, 2, (3, 100), 2, (3, 3), (1, 1, 1, 2), false),
        [true, false, true],
    ),
    (
        case(2, 2, (20, 20), 2, (17, 17), (1, 8, 1, 2), true),
        [false, false, false],
    ),
    (
        case(1, 2, (40, 64), 2, (9, 9), (1, 20, 5, 2), false),
        [false, false, false],
    ),
];

/// The windowed kernels (dense, stride 1, kernels reaching <= 3 pixels): tiles cut at the
/// plane's edges (19×37 is 2 tiles of 16×32 down and across, each thread's second row past
/// the edge in the lower ones), Cin not a multiple of the 4
/// staged channels, Cout over one group of 16 (17, 33), 1×1, 3×1, 2×2 with dilation 2,
/// no padding, and padding past the kernel's reach (grad_x's window offset goes negative);
/// grad_w runs on the windowed kernel for 3×3 and on the GEMM otherwise.
const WINDOW_CASES: &[Case] = &[
    case(2, 5, (19, 37), 17, (3, 3), (1, 1, 1, 1), true),
    case(1, 16, (9, 33), 16, (3, 3), (1, 0, 1, 1), false),
    case(3, 4, (8, 8), 33, (1, 1), (1, 0, 1, 1), true),
    case(1, 6, (10, 7), 3, (3, 1), (1, 1, 1, 1), true),
    case(2, 3, (11, 12), 8, (2, 2), (1, 1, 2, 1), false),
    case(1, 2, (6, 5), 5, (3, 3), (1, 3, 1, 1), true),
];

#[test]
fn window_kernels_match_reference_and_refuse_wide_kernels() {
    let mut rng = Rng(16);
    for c in WINDOW_CASES {
        check_case(&mut rng, c, ConvAlgo::Window, TOL);
    }
    // grad_w with several (image, tile) pairs per workgroup: 65 channels each way make 5×17
    // channel groups, so 45 pairs go 2 to a chunk; sums of 4800 terms, as GEMM_TOL.
    let many = case(3, 65, (40, 40), 65, (3, 3), (1, 1, 1, 1), false);
    check_case(&mut rng, &many, ConvAlgo::Window, GEMM_TOL);
    let g = gpu();
    let z = |shape: &[usize]| Tensor::zeros(&g, shape).unwrap();
    let p = Conv2dParams {
        padding: 3,
        ..Default::default()
    };
    let err = conv2d_forward_with(
        &z(&[1, 2, 8, 8]),
        &z(&[2, 2, 7, 7]),
        None,
        p,
        ConvAlgo::Window,
    )
    .unwrap_err();
    assert!(format!("{err}").contains("windowed kernels"), "{err}");
}

/// A depthwise forward or grad_x pass: (plan, x or w, w or gy, bias or accumulated gradient).
type DepthwisePass = fn(&Depthwise, &Tensor, &Tensor, Option<&Tensor>) -> anyhow::Result<Tensor>;
/// A depthwise grad_w pass: (plan, x, gy, with bias) -> (gw, gb).
type DepthwiseGradW =
    fn(&Depthwise, &Tensor, &Tensor, bool) -> anyhow::Result<(Tensor, Option<Tensor>)>;

/// A depthwise kernel family's three passes, as `Depthwise` methods.
struct DepthwisePasses {
    name: &'static str,
    forward: DepthwisePass,
    grad_x: DepthwisePass,
    grad_wb: DepthwiseGradW,
}

/// The column kernels (`Depthwise::*_columns`, ConvAlgo::Auto's), which run forward and
/// grad_x of every planned depthwise convolution and grad_w where its tiles fit; and the
/// strips in workgroup memory (`Depthwise::*_strip`, autotuning candidates), which run where
/// they fit. Both fall back to the one-output tiled kernels elsewhere.
const DEPTHWISE_FAMILIES: [DepthwisePasses; 2] = [
    DepthwisePasses {
        name: "columns",
        forward: Depthwise::forward_columns,
        grad_x: Depthwise::grad_x_columns,
        grad_wb: Depthwise::grad_wb_columns,
    },
    DepthwisePasses {
        name: "strips",
        forward: Depthwise::forward_strip,
        grad_x: Depthwise::grad_x_strip,
        grad_wb: Depthwise::grad_wb_strip,
    },
];

/// Forward, grad_x (alone and adding a gradient from elsewhere), grad_w and grad_b of `c` on
/// one depthwise kernel family against the f64 reference.
fn check_depthwise_family(rng: &mut Rng, c: &Case, dw: &Depthwise, f: &DepthwisePasses) {
    let x = rng.arr(&[c.n, c.cin, c.h, c.w], 1.0);
    let w = rng.arr(&[c.cout, 1, c.kh, c.kw], 0.5);
    let b = c.bias.then(|| rng.arr(&[c.cout], 0.5));
    let (pd, d, g) = (c.padding, c.dilation, c.groups);
    let want = rconv::conv2d(&x, &w, b.as_ref(), 1, pd, d, g);
    let (tx, tw) = (up(&x), up(&w));
    let tb = b.as_ref().map(up);
    let name = format!("{} {:?} x {:?} pad {pd} dil {d}", f.name, x.shape, w.shape);
    let y = (f.forward)(dw, &tx, &tw, tb.as_ref()).unwrap();
    assert_close(&format!("y {name}"), &y, &want, TOL);
    let gy = rng.arr(&want.shape, 1.0);
    let (wx, ww, wb) = rconv::conv2d_backward(&x, &w, &gy, 1, pd, d, g);
    let tgy = up(&gy);
    let gx = (f.grad_x)(dw, &tw, &tgy, None).unwrap();
    assert_close(&format!("grad_x {name}"), &gx, &wx, TOL);
    let acc = rng.arr(&x.shape, 1.0);
    let gx = (f.grad_x)(dw, &tw, &tgy, Some(&up(&acc))).unwrap();
    let want = wx.zip(&acc, |a, b| a + b);
    assert_close(&format!("grad_x + acc {name}"), &gx, &want, TOL);
    let (gw, gb) = (f.grad_wb)(dw, &tx, &tgy, c.bias).unwrap();
    assert_close(&format!("grad_w {name}"), &gw, &ww, TOL);
    assert_eq!(gb.is_some(), c.bias, "grad_b presence {name}");
    if let Some(gb) = gb {
        assert_close(&format!("grad_b {name}"), &gb, &wb, TOL);
    }
}

/// Each case on the default kernels (columns where they fit, else direct forward and grad_x
/// and tiled grad_w), the direct ones, and where tiles fit the one-output tiled kernels,
/// the columns and the strips (a clear error from ConvAlgo::Tiled where tiles do not fit).
#[test]
fn depthwise_tiled_kernels_match_reference() {
    let mut rng = Rng(15);
    for (c, [tiled, strips, gw_strips]) in DEPTHWISE_CASES {
        let plan = Depthwise::plan(
            c.n,
            c.cin,
            (c.h, c.w),
            (
                c.h + 2 * c.padding - (c.kh - 1) * c.dilation,
                c.w + 2 * c.padding - (c.kw - 1) * c.dilation,
            ),
            (c.kh, c.kw),
            c.padding,
            c.dilation,
        );
        assert_eq!(plan.is_some(), *tiled, "tiles fit {plan:?}");
        assert_eq!(
            plan.is_some_and(|d| d.has_strips()),
            *strips,
            "strips fit {plan:?}"
        );
        let gw_fit = plan.is_some_and(|d| d.has_grad_w_strips());
        assert_eq!(gw_fit, *gw_strips, "grad_w strips fit {plan:?}");
        check_case(&mut rng, c, ConvAlgo::Auto, TOL);
        check_case(&mut rng, c, ConvAlgo::Direct, TOL);
        if let Some(dw) = plan {
            check_case(&mut rng, c, ConvAlgo::Tiled, TOL);
            for f in &DEPTHWISE_FAMILIES {
                check_depthwise_family(&mut rng, c, &dw, f);
            }
        } else {
            let z = |shape: &[usize]| Tensor::zeros(&gpu(), shape).unwrap();
            let w = z(&[c.cout, 1, c.kh, c.kw]);
            let err = conv2d_forward_with(
                &z(&[c.n, c.cin, c.h, c.w]),
                &w,
                None,
                params(c),
                ConvAlgo::Tiled,
            )
            .unwrap_err();
            assert!(
                format!("{err}").contains("tiled depthwise kernels"),
                "{err}"
            );
        }
    }
}

#[test]
fn conv2d_gemm_rejects_groups() {
    let g = gpu();
    let z = |shape: &[usize]| Tensor::zeros(&g, shape).unwrap();
    let p = Conv2dParams {
        groups: 2,
        ..Default::default()
    };
    let e = conv2d_forward_with(
        &z(&[1, 4, 5, 5]),
        &z(&[4, 2, 3, 3]),
        None,
        p,
        ConvAlgo::Gemm,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("groups == 1"), "{e}");
}

/// Σ y·gy as a scalar Var, so that backward() delivers gy into conv2d's backward.
fn dot_loss(y: &Var, gy: &Tensor) -> Var {
    let prod = ew::mul(y, &Var::constant(gy.clone())).unwrap();
    reduce::sum(&prod, &[0, 1, 2, 3], false).unwrap()
}

/// The residual's grad_x is conv2d's grad_x of gz (the same sums as `gx1`) with gz added in
/// its store: one correctly rounded f32 addition, ≤ 2⁻²⁴ of each value, so no floor.
const RESIDUAL_TOL: Tol = Tol::new(1e-6, 0.0);

#[test]
fn autograd_conv2d_matches_backward_and_skips_unneeded_grads() {
    let mut rng = Rng(12);
    let p = Conv2dParams {
        stride: 2,
        padding: 1,
        ..Default::default()
    };
    let x = rng.arr(&[2, 4, 7, 6], 1.0);
    let w = rng.arr(&[5, 4, 3, 3], 0.5);
    let b = rng.arr(&[5], 0.5);
    let (tx, tw, tb) = (up(&x), up(&w), up(&b));
    let y = conv2d_forward(&tx, &tw, Some(&tb), p).unwrap();
    let gy = up(&rng.arr(y.shape(), 1.0));
    let (gx, gw, gb) = conv2d_backward(&tx, &tw, true, &gy, p).unwrap();
    let exact = |a: &Tensor| Arr::from_f32(a.shape(), &down(a));

    let (vx, vw, vb) = (
        Var::param(tx.clone()),
        Var::param(tw.clone()),
        Var::param(tb.clone()),
    );
    let vy = conv2d(&vx, &vw, Some(&vb), p).unwrap();
    assert_close("autograd y", vy.value(), &exact(&y), Tol::EXACT);
    backward(&dot_loss(&vy, &gy)).unwrap();
    assert_close(
        "autograd grad_x",
        &vx.grad().unwrap(),
        &exact(&gx),
        Tol::EXACT,
    );
    assert_close(
        "autograd grad_w",
        &vw.grad().unwrap(),
        &exact(&gw),
        Tol::EXACT,
    );
    assert_close(
        "autograd grad_b",
        &vb.grad().unwrap(),
        &exact(gb.as_ref().unwrap()),
        Tol::EXACT,
    );

    // A residual z = conv2d(x, w1) + x: the add's backward runs first (it is downstream of
    // the convolution), and conv2d's grad_x kernel adds its gradient of x in its store.
    let same = Conv2dParams {
        padding: 1,
        ..Default::default()
    };
    let w1 = up(&rng.arr(&[4, 4, 3, 3], 0.5));
    let gz = up(&rng.arr(&x.shape, 1.0));
    let (gx1, _, _) = conv2d_backward(&tx, &w1, false, &gz, same).unwrap();
    let vx = Var::param(tx.clone());
    let z = ew::add(&conv2d(&vx, &Var::param(w1), None, same).unwrap(), &vx).unwrap();
    backward(&dot_loss(&z, &gz)).unwrap();
    let want = exact(&gx1).zip(&exact(&gz), |a, b| a + b);
    assert_close(
        "autograd grad_x of a residual",
        &vx.grad().unwrap(),
        &want,
        RESIDUAL_TOL,
    );

    // An input image (constant) gets no gradient; the weight's is unchanged.
    let (cx, cw) = (Var::constant(tx), Var::param(tw));
    backward(&dot_loss(&conv2d(&cx, &cw, None, p).unwrap(), &gy)).unwrap();
    assert!(cx.grad().is_none());
    assert_close(
        "autograd grad_w, no bias",
        &cw.grad().unwrap(),
        &exact(&gw),
        Tol::EXACT,
    );
}

/// Autotuning (on a GPU of its own, so other tests keep the default kernels): every pass of a
/// dense and of a tiled depthwise convolution is tuned once among its candidates (GEMM,
/// direct and windowed kernels; tiled or direct depthwise ones), a second
/// call reuses the choice, and the results match the reference whichever kernels won.
#[test]
fn autotuned_convolutions_tune_each_pass_once_and_match_reference() {
    let gpu = Gpu::new(&AdapterChoice::default()).expect("a GPU adapter");
    gpu.set_autotune(true);
    let mut rng = Rng(17);
    let to_gpu = |a: &Arr| Tensor::from_f32(&gpu, &a.to_f32(), &a.shape).unwrap();
    for c in [
        case(2, 4, (9, 8), 6, (3, 3), (1, 1, 1, 1), true),
        case(2, 5, (12, 11), 5, (7, 7), (1, 9, 3, 5), true),
    ] {
        let p = params(&c);
        let x = rng.arr(&[c.n, c.cin, c.h, c.w], 1.0);
        let w = rng.arr(&[c.cout, c.cin / c.groups, c.kh, c.kw], 0.5);
        let b = rng.arr(&[c.cout], 0.5);
        let (s, pd, d, g) = (c.stride, c.padding, c.dilation, c.groups);
        let want = rconv::conv2d(&x, &w, Some(&b), s, pd, d, g);
        let gy = rng.arr(&want.shape, 1.0);
        let (wx, ww, wb) = rconv::conv2d_backward(&x, &w, &gy, s, pd, d, g);
        let before = gpu.tuned_choices().len();
        for round in 0..2 {
            let (tx, tw, tb) = (to_gpu(&x), to_gpu(&w), to_gpu(&b));
            let y = conv2d_forward(&tx, &tw, Some(&tb), p).unwrap();
            let (gx, gw, gb) = conv2d_backward(&tx, &tw, true, &to_gpu(&gy), p).unwrap();
            let what = format!("autotuned {:?} round {round}", w.shape);
            for (name, got, want) in [("y", &y, &want), ("grad_x", &gx, &wx), ("grad_w", &gw, &ww)]
            {
                assert_close(&format!("{what} {name}"), got, want, TOL);
            }
            assert_close(&format!("{what} grad_b"), &gb.unwrap(), &wb, TOL);
            // forward, grad_x and grad_w+b: three decisions, made in the first round only.
            assert_eq!(gpu.tuned_choices().len(), before + 3, "{what}");
        }
    }
    // A second device with the first one's choices restored and autotuning off (a resumed
    // run) times nothing and runs the same kernels: bit-identical results.
    let again = Gpu::new(&AdapterChoice::default()).expect("a GPU adapter");
    again.preset_tuning(gpu.tuning_state());
    let c = case(2, 4, (9, 8), 6, (3, 3), (1, 1, 1, 1), true);
    let p = params(&c);
    let x = rng.arr(&[c.n, c.cin, c.h, c.w], 1.0);
    let w = rng.arr(&[c.cout, c.cin, c.kh, c.kw], 0.5);
    let gy = rng.arr(&[c.n, c.cout, c.h, c.w], 1.0);
    let b = rng.arr(&[c.cout], 0.5);
    let run = |g: &Arc<Gpu>| {
        let t = |a: &Arr| Tensor::from_f32(g, &a.to_f32(), &a.shape).unwrap();
        let y = conv2d_forward(&t(&x), &t(&w), Some(&t(&b)), p).unwrap();
        let (gx, gw, gb) = conv2d_backward(&t(&x), &t(&w), true, &t(&gy), p).unwrap();
        [y, gx, gw, gb.unwrap()].map(|t| t.to_f32().unwrap())
    };
    assert!(
        run(&gpu) == run(&again),
        "restored choices give other results"
    );
    assert!(
        again.tuned_choices().is_empty(),
        "nothing timed with choices restored"
    );
    // A restored name is run by position among the candidates, untimed; other keys get the
    // default (autotuning is off here).
    again.preset_tuning([("op k".to_string(), "b".to_string())].into());
    let mut timed = 0;
    let mut choose = |key: &str| {
        again.choose(
            || key.to_string(),
            &["a", "b"],
            |_| {
                timed += 1;
                Ok(())
            },
        )
    };
    assert_eq!(choose("op k").unwrap(), 1);
    assert_eq!(choose("op other").unwrap(), 0);
    assert_eq!(timed, 0);
    // With autotuning on, a candidate that fails is passed over, not an error.
    let fails = |i: usize| {
        if i == 0 {
            anyhow::bail!("candidate a cannot run here")
        }
        Ok(())
    };
    assert_eq!(
        gpu.choose(|| "op fails".into(), &["a", "b"], fails)
            .unwrap(),
        1
    );
    // Every grad_w candidate, forced through a restored choice, against the reference (the
    // split-K variants differ only in how K is cut).
    let (s, pd, d, gr) = (c.stride, c.padding, c.dilation, c.groups);
    let (_, ww, wb) = rconv::conv2d_backward(&x, &w, &gy, s, pd, d, gr);
    let key = format!("conv2d grad_w+b x [2, 4, 9, 8] w [6, 4, 3, 3] {p:?}");
    assert!(
        gpu.tuned_choices().iter().any(|t| t.key == key),
        "no key {key}"
    );
    for name in [
        "gemm",
        "direct",
        "gemm-splits-fewer",
        "gemm-splits-more",
        "window",
    ] {
        let forced = Gpu::new(&AdapterChoice::default()).expect("a GPU adapter");
        forced.preset_tuning([(key.clone(), name.to_string())].into());
        let t = |a: &Arr| Tensor::from_f32(&forced, &a.to_f32(), &a.shape).unwrap();
        let (_, gw, gb) = conv2d_backward(&t(&x), &t(&w), true, &t(&gy), p).unwrap();
        for (what, got, want) in [("grad_w", gw, &ww), ("grad_b", gb.unwrap(), &wb)] {
            assert_close(&format!("{name} {what}"), &got, want, TOL);
        }
        assert_eq!(forced.tuning_state().get(&key), Some(&name.to_string()));
    }
    for t in gpu
        .tuned_choices()
        .iter()
        .filter(|t| t.key.starts_with("conv2d"))
    {
        assert!(t.candidates.len() >= 2, "{t:?}");
        assert!(
            t.candidates.iter().any(|(name, _)| *name == t.chosen),
            "{t:?}"
        );
        assert!(
            t.candidates
                .iter()
                .all(|&(_, ms)| ms.is_finite() && ms >= 0.0),
            "{t:?}"
        );
    }
}

#[test]
fn conv2d_reference_passes_finite_differences() {
    let mut rng = Rng(13);
    // Strided with padding, depthwise dilated, grouped with a non-square kernel.
    let cases = [
        case(2, 3, (5, 4), 4, (3, 3), (2, 1, 1, 1), true),
        case(1, 4, (7, 7), 4, (3, 3), (1, 3, 2, 4), true),
        case(2, 4, (4, 5), 6, (2, 1), (1, 0, 1, 2), true),
    ];
    for c in &cases {
        let (xs, ws) = (
            [c.n, c.cin, c.h, c.w],
            [c.cout, c.cin / c.groups, c.kh, c.kw],
        );
        let (s, pd, d, g) = (c.stride, c.padding, c.dilation, c.groups);
        let x = rng.arr(&xs, 1.0);
        let w = rng.arr(&ws, 0.5);
        let b = rng.arr(&[c.cout], 0.5);
        let y = rconv::conv2d(&x, &w, Some(&b), s, pd, d, g);
        let gy = rng.arr(&y.shape, 1.0);
        let (gx, gw, gb) = rconv::conv2d_backward(&x, &w, &gy, s, pd, d, g);
        let loss = |x: &Arr, w: &Arr, b: &Arr| dot(&rconv::conv2d(x, w, Some(b), s, pd, d, g), &gy);
        let ex = finite_diff_check(&x, &gx, |v| loss(v, &w, &b));
        let ew = finite_diff_check(&w, &gw, |v| loss(&x, v, &b));
        let eb = finite_diff_check(&b, &gb, |v| loss(&x, &w, v));
        for (what, e) in [("x", ex), ("w", ew), ("b", eb)] {
            assert!(
                e < FD_TOL,
                "{what} {xs:?} {ws:?}: finite difference error {e:.3e}"
            );
        }
    }
}

#[test]
fn conv2d_matches_pytorch_golden() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/golden/ops.safetensors"
    );
    let file = TensorFile::load(Path::new(path)).unwrap();
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(file.meta("conv_cases").unwrap()).unwrap();
    assert!(!cases.is_empty(), "no conv cases in {path}");
    let load = |name: &str| {
        let (shape, data) = file.f32(name).unwrap();
        (
            Tensor::from_f32(&gpu(), data, shape).unwrap(),
            Arr::from_f32(shape, data),
        )
    };
    for case in &cases {
        let prefix = case["prefix"].as_str().unwrap();
        let get = |k: &str| case[k].as_u64().unwrap() as usize;
        let p = Conv2dParams {
            stride: get("stride"),
            padding: get("padding"),
            dilation: get("dilation"),
            groups: get("groups"),
        };
        let bias = case["bias"].as_bool().unwrap();
        let t = |k: &str| load(&format!("{prefix}{k}"));
        let ((x, _), (w, _), (gy, _)) = (t("x"), t("w"), t("grad_y"));
        let b = bias.then(|| t("b").0);
        let y = conv2d_forward(&x, &w, b.as_ref(), p).unwrap();
        assert_close(&format!("{prefix}y {p:?}"), &y, &t("y").1, GOLDEN_TOL);
        let (gx, gw, gb) = conv2d_backward(&x, &w, bias, &gy, p).unwrap();
        assert_close(&format!("{prefix}grad_x"), &gx, &t("grad_x").1, GOLDEN_TOL);
        assert_close(&format!("{prefix}grad_w"), &gw, &t("grad_w").1, GOLDEN_TOL);
        if bias {
            let gb = gb.as_ref().unwrap();
            assert_close(&format!("{prefix}grad_b"), gb, &t("grad_b").1, GOLDEN_TOL);
        }
    }
}

#[test]
fn conv2d_rejects_bad_shapes_with_clear_errors() {
    let g = gpu();
    let z = |shape: &[usize]| Tensor::zeros(&g, shape).unwrap();
    let d = Conv2dParams::default();
    let err = |r: anyhow::Result<Tensor>| format!("{:#}", r.unwrap_err());
    let e = err(conv2d_forward(
        &z(&[1, 3, 5, 5]),
        &z(&[4, 2, 3, 3]),
        None,
        d,
    ));
    assert!(e.contains("weight w"), "{e}");
    let e = err(conv2d_forward(
        &z(&[1, 6, 5, 5]),
        &z(&[4, 2, 3, 3]),
        None,
        Conv2dParams { groups: 3, ..d },
    ));
    assert!(e.contains("groups 3"), "{e}");
    let e = err(conv2d_forward(
        &z(&[1, 2, 4, 4]),
        &z(&[2, 2, 3, 3]),
        None,
        Conv2dParams { dilation: 3, ..d },
    ));
    assert!(e.contains("output size"), "{e}");
    let e = err(conv2d_forward(
        &z(&[1, 2, 4, 4]),
        &z(&[2, 2, 3, 3]),
        Some(&z(&[3])),
        d,
    ));
    assert!(e.contains("bias b"), "{e}");
    let e = err(conv2d_forward(&z(&[2, 4, 4]), &z(&[2, 2, 3, 3]), None, d));
    assert!(e.contains("input x"), "{e}");
    let e = conv2d_backward(
        &z(&[1, 2, 4, 4]),
        &z(&[2, 2, 3, 3]),
        false,
        &z(&[1, 2, 3, 3]),
        d,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("gy") && e.contains("[1, 2, 2, 2]"), "{e}");
    let e = err(conv2d_grad_x_with(
        &z(&[1, 2, 4, 4]),
        &z(&[2, 2, 3, 3]),
        &z(&[1, 2, 2, 2]),
        Some(&z(&[1, 2, 2, 2])),
        d,
        ConvAlgo::Auto,
    ));
    assert!(e.contains("x's shape [1, 2, 4, 4]"), "{e}");
}
