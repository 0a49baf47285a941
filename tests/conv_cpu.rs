//! The CPU-class dense convolution kernels (`ops::conv::cpu`): every variant's forward,
//! grad_x (with and without a gradient to accumulate), grad_w and grad_b against the f64
//! CPU reference on odd shapes, and shape validation.

mod common;
use common::{assert_close, gpu, up};
use lskbb::ops::conv::cpu::{self, VARIANTS, W_VARIANTS};
use lskbb::ops::conv::Conv2dParams;
use lskbb::reference::conv as rconv;
use lskbb::reference::{Arr, Rng, Tol};
use lskbb::Tensor;

/// Each output is an f32 sum of products of values ≤ 1 in magnitude: at most 16·9 = 144
/// (forward), 20·9 = 180 (grad_x) or N·Ho·Wo = 3·9·11 + bias... ≤ 420 (grad_w, grad_b) of
/// them, summed in a different order than the f64 reference (per chunk and per invocation,
/// then over the slots). f32 rounding (eps 6e-8) accumulates to ~√terms·eps relative to the
/// sum of |terms|, ≈ 1e-6 typical and < 3e-5 worst case over these sizes relative to the
/// largest output; 1e-4 with the floor at the largest |want| (as in tests/conv.rs) leaves
/// margin, while an index or mask bug gives errors of O(0.1). NaN or inf fail (Tol::check).
const TOL: Tol = Tol::new(1e-4, 1.0);

struct Case {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: (usize, usize),
    stride: usize,
    padding: usize,
    dilation: usize,
    bias: bool,
}

const fn case(
    n: usize,
    cin: usize,
    (h, w): (usize, usize),
    cout: usize,
    k: (usize, usize),
    (stride, padding, dilation): (usize, usize, usize),
    bias: bool,
) -> Case {
    Case {
        n,
        cin,
        h,
        w,
        cout,
        k,
        stride,
        padding,
        dilation,
        bias,
    }
}

/// Odd H and W, channel counts that are not multiples of the blocks (4, 8, 16 channels; 1,
/// 2, 4 taps; 8 to 64 columns), stride 1 and 2 (grad_x's phases of unequal sizes), 1×1, 3×3
/// and 7×7, a non-square kernel, dilation 2, a 1×1 stride-2 conv whose grad_x skips pixels
/// (they must be zero, or gx_in with accumulate), rows wider than 64 columns, a 1×1 output,
/// batch 1 to 3, widths that are multiples of 4 with stride 1 and "same" padding for the
/// `quad` variants (1×1, 3×3 with 17 channels, 7×7 on a 9×4 map, maps narrower than the
/// window), and the model's kinds: stem 3→16, 3×3 16→20 (17 weights blocks), LSK
/// squeeze 2→2 7×7 pad 3 with bias, 1×1 C→C/2 with bias.
const CASES: &[Case] = &[
    case(2, 3, (9, 7), 6, (3, 3), (1, 1, 1), true),
    case(3, 5, (8, 11), 9, (3, 3), (2, 1, 1), false),
    case(1, 7, (11, 13), 5, (1, 1), (1, 0, 1), true),
    case(2, 2, (13, 10), 2, (7, 7), (1, 3, 1), true),
    case(1, 3, (10, 9), 17, (3, 3), (2, 1, 1), true),
    case(3, 1, (5, 6), 16, (3, 3), (1, 1, 1), false),
    case(2, 4, (9, 9), 3, (3, 3), (2, 1, 2), false),
    case(1, 6, (7, 5), 4, (1, 1), (2, 0, 1), false),
    case(1, 4, (6, 70), 5, (3, 3), (1, 1, 1), true),
    case(2, 16, (9, 11), 20, (3, 3), (1, 1, 1), true),
    case(1, 5, (6, 7), 3, (3, 2), (1, 1, 1), false),
    case(2, 3, (3, 3), 4, (3, 3), (1, 0, 1), true),
    case(1, 12, (9, 9), 6, (1, 1), (1, 0, 1), true),
    case(2, 5, (7, 8), 6, (3, 3), (1, 1, 1), true),
    case(1, 9, (5, 12), 13, (1, 1), (1, 0, 1), true),
    case(2, 2, (9, 4), 2, (7, 7), (1, 3, 1), true),
    case(1, 3, (6, 16), 17, (3, 3), (1, 1, 1), false),
    case(3, 1, (3, 4), 16, (3, 3), (1, 1, 1), true),
];

fn params(c: &Case) -> Conv2dParams {
    Conv2dParams {
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
        groups: 1,
    }
}

/// Inputs and f64 reference results of one case: x, w, b, y, gy, gx, gw, gb.
struct Data {
    x: Arr,
    w: Arr,
    b: Option<Arr>,
    y: Arr,
    gy: Arr,
    gx: Arr,
    gw: Arr,
    gb: Arr,
}

fn data(rng: &mut Rng, c: &Case) -> Data {
    let x = rng.arr(&[c.n, c.cin, c.h, c.w], 1.0);
    let w = rng.arr(&[c.cout, c.cin, c.k.0, c.k.1], 0.5);
    let b = c.bias.then(|| rng.arr(&[c.cout], 0.5));
    let (s, pd, d) = (c.stride, c.padding, c.dilation);
    let y = rconv::conv2d(&x, &w, b.as_ref(), s, pd, d, 1);
    let gy = rng.arr(&y.shape, 1.0);
    let (gx, gw, gb) = rconv::conv2d_backward(&x, &w, &gy, s, pd, d, 1);
    Data {
        x,
        w,
        b,
        y,
        gy,
        gx,
        gw,
        gb,
    }
}

fn name(c: &Case, d: &Data) -> String {
    format!("{:?} x {:?} {:?}", d.x.shape, d.w.shape, params(c))
}

#[test]
fn forward_matches_reference() {
    let mut rng = Rng(21);
    let mut ran: Vec<cpu::Variant> = Vec::new();
    for c in CASES {
        let d = data(&mut rng, c);
        let (x, w, b) = (up(&d.x), up(&d.w), d.b.as_ref().map(up));
        for &v in VARIANTS {
            let r = cpu::forward(&x, &w, b.as_ref(), params(c), v);
            assert_eq!(r.is_ok(), v.applies(&x, &w, params(c)), "{v} applies");
            if let Ok(y) = r {
                assert_close(&format!("y {v} {}", name(c, &d)), &y, &d.y, TOL);
                ran.push(v);
            }
        }
    }
    every_variant_ran(&ran);
}

/// Every variant ran on at least one case, so none goes untested.
fn every_variant_ran(ran: &[cpu::Variant]) {
    for v in VARIANTS {
        assert!(ran.contains(v), "{v} ran on no case");
    }
}

#[test]
fn grad_x_matches_reference() {
    let mut rng = Rng(22);
    let mut ran: Vec<cpu::Variant> = Vec::new();
    for c in CASES {
        let d = data(&mut rng, c);
        let (x, w, gy) = (up(&d.x), up(&d.w), up(&d.gy));
        let acc = rng.arr(&d.x.shape, 1.0);
        let gx_acc = d.gx.zip(&acc, |a, b| a + b);
        let tacc = up(&acc);
        for &v in VARIANTS.iter().filter(|v| v.applies(&x, &w, params(c))) {
            let gx = cpu::grad_x(&x, &w, &gy, None, params(c), v).unwrap();
            assert_close(&format!("grad_x {v} {}", name(c, &d)), &gx, &d.gx, TOL);
            let gx = cpu::grad_x(&x, &w, &gy, Some(&tacc), params(c), v).unwrap();
            assert_close(
                &format!("grad_x + acc {v} {}", name(c, &d)),
                &gx,
                &gx_acc,
                TOL,
            );
            ran.push(v);
        }
    }
    every_variant_ran(&ran);
}

#[test]
fn grad_w_and_grad_b_match_reference() {
    let mut rng = Rng(23);
    for c in CASES {
        let d = data(&mut rng, c);
        let (x, w, gy) = (up(&d.x), up(&d.w), up(&d.gy));
        for &v in W_VARIANTS {
            for bias in [false, true] {
                let what = format!("{v} bias {bias} {}", name(c, &d));
                let (gw, gb) = cpu::grad_w(&x, &w, &gy, bias, params(c), v).unwrap();
                assert_close(&format!("grad_w {what}"), &gw, &d.gw, TOL);
                assert_eq!(gb.is_some(), bias, "grad_b presence {what}");
                if let Some(gb) = gb {
                    assert_close(&format!("grad_b {what}"), &gb, &d.gb, TOL);
                }
            }
        }
    }
}

/// grad_w's partial sums are added in a fixed order: two runs give the same bits.
#[test]
fn grad_w_is_deterministic() {
    let mut rng = Rng(24);
    let c = &CASES[9];
    let d = data(&mut rng, c);
    let (x, w, gy) = (up(&d.x), up(&d.w), up(&d.gy));
    for &v in W_VARIANTS {
        let run = || {
            let (gw, gb) = cpu::grad_w(&x, &w, &gy, true, params(c), v).unwrap();
            (gw.to_f32().unwrap(), gb.unwrap().to_f32().unwrap())
        };
        assert_eq!(run(), run(), "{v}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let t = |shape: &[usize]| Tensor::zeros(&g, shape).unwrap();
    let p = Conv2dParams {
        padding: 1,
        ..Default::default()
    };
    let v = VARIANTS[0];
    let (x, w) = (t(&[1, 4, 5, 5]), t(&[8, 4, 3, 3]));
    let grouped = Conv2dParams { groups: 2, ..p };
    let err = |r: anyhow::Result<Tensor>| r.unwrap_err().to_string();
    assert!(err(cpu::forward(&x, &t(&[8, 2, 3, 3]), None, grouped, v)).contains("groups"));
    assert!(err(cpu::forward(&x, &t(&[8, 3, 3, 3]), None, p, v)).contains("Cin"));
    assert!(err(cpu::forward(&x, &w, Some(&t(&[7])), p, v)).contains("bias"));
    assert!(err(cpu::forward(
        &t(&[1, 4, 1, 1]),
        &w,
        None,
        Conv2dParams::default(),
        v
    ))
    .contains("does not fit"));
    assert!(err(cpu::grad_x(&x, &w, &t(&[1, 8, 4, 5]), None, p, v)).contains("gy"));
    assert!(err(cpu::grad_x(
        &x,
        &w,
        &t(&[1, 8, 5, 5]),
        Some(&t(&[1, 4, 5, 4])),
        p,
        v
    ))
    .contains("accumulate"));
    let odd = cpu::Variant {
        k: 12,
        p: 3,
        wg: 8,
        quad: false,
    };
    assert!(err(cpu::forward(&x, &w, None, p, odd)).contains("variant"));
    let quad = VARIANTS.iter().find(|v| v.quad).copied().unwrap();
    assert!(!quad.applies(&x, &w, p), "width 5 is not a multiple of 4");
    assert!(err(cpu::forward(&x, &w, None, p, quad)).contains("multiple of 4"));
    let r = cpu::grad_w(&x, &w, &t(&[1, 8, 5, 6]), true, p, W_VARIANTS[0]);
    assert!(r.unwrap_err().to_string().contains("gy"));
}

/// n, c, (h, w), ks, dil, bias.
type DwCase = (usize, usize, (usize, usize), usize, usize, bool);

/// The depthwise kernels (`ops::conv::depthwise_cpu`): cases with odd heights, widths that
/// are multiples of 4 but not of the 8 pixels of a Q = 2 block (12, 20), maps smaller than
/// the dilated 7×7 window (4×4, span 19) and than a row group (P·DIL rows), 1 to 3 images,
/// channel counts 1, 3, 5, with and without bias: n, c, (h, w), ks, dil, bias.
const DW_CASES: &[DwCase] = &[
    (2, 3, (9, 12), 5, 1, true),
    (1, 5, (7, 8), 5, 1, false),
    (3, 1, (5, 4), 5, 1, true),
    (2, 3, (11, 20), 7, 3, false),
    (1, 2, (4, 4), 7, 3, true),
    (3, 5, (13, 8), 7, 3, true),
];

/// Depthwise outputs sum at most KS² = 49 products (forward, grad_x) or N·H·W ≤ 3·13·8 = 312
/// (grad_w, grad_b) of values ≤ 1 in magnitude in another order than the f64 reference: as
/// for TOL, f32 rounding stays below ~1e-5 of the largest output, so 1e-4 with the floor at
/// the largest |want| leaves margin while an index or mask bug is off by O(0.1).
#[test]
fn depthwise_matches_reference() {
    use lskbb::ops::conv::depthwise_cpu::{self as dwc, VARIANTS as DW};
    let mut rng = Rng(25);
    let mut ran = Vec::new();
    for &(n, c, (h, wd), ks, dil, bias) in DW_CASES {
        let pad = (ks - 1) * dil / 2;
        let x = rng.arr(&[n, c, h, wd], 1.0);
        let w = rng.arr(&[c, 1, ks, ks], 0.5);
        let b = bias.then(|| rng.arr(&[c], 0.5));
        let y = rconv::conv2d(&x, &w, b.as_ref(), 1, pad, dil, c);
        let gy = rng.arr(&y.shape, 1.0);
        let (gx, gw, gb) = rconv::conv2d_backward(&x, &w, &gy, 1, pad, dil, c);
        let acc = rng.arr(&x.shape, 1.0);
        let gx_acc = gx.zip(&acc, |a, b| a + b);
        let p = Conv2dParams {
            stride: 1,
            padding: pad,
            dilation: dil,
            groups: c,
        };
        let (tx, tw, tb, tgy, tacc) = (up(&x), up(&w), b.as_ref().map(up), up(&gy), up(&acc));
        let name = format!("{:?} x {:?} {p:?}", x.shape, w.shape);
        for &v in DW {
            let r = dwc::forward(&tx, &tw, tb.as_ref(), p, v);
            assert_eq!(r.is_ok(), v.applies(&tx, &tw, p), "{v} applies {name}");
            let Ok(ty) = r else { continue };
            assert_close(&format!("dw y {v} {name}"), &ty, &y, TOL);
            let g = dwc::grad_x(&tx, &tw, &tgy, None, p, v).unwrap();
            assert_close(&format!("dw grad_x {v} {name}"), &g, &gx, TOL);
            let g = dwc::grad_x(&tx, &tw, &tgy, Some(&tacc), p, v).unwrap();
            assert_close(&format!("dw grad_x + acc {v} {name}"), &g, &gx_acc, TOL);
            for with_b in [false, true] {
                let (g, gbias) = dwc::grad_wb(&tx, &tw, &tgy, with_b, p, v).unwrap();
                assert_close(&format!("dw grad_w {v} bias {with_b} {name}"), &g, &gw, TOL);
                assert_eq!(gbias.is_some(), with_b, "dw grad_b presence {v} {name}");
                if let Some(g) = gbias {
                    assert_close(&format!("dw grad_b {v} {name}"), &g, &gb, TOL);
                }
            }
            ran.push(v);
        }
    }
    for v in DW {
        assert!(ran.contains(v), "{v} ran on no case");
    }
    // Not depthwise, the wrong dilation, or a width that is not a multiple of 4: errors.
    let g = gpu();
    let t = |shape: &[usize]| Tensor::zeros(&g, shape).unwrap();
    let v = DW[0];
    let p = Conv2dParams {
        padding: 2,
        groups: 4,
        ..Default::default()
    };
    let err = |r: anyhow::Result<Tensor>| r.unwrap_err().to_string();
    assert!(dwc::forward(&t(&[1, 4, 6, 8]), &t(&[4, 1, 5, 5]), None, p, v).is_ok());
    assert!(err(dwc::forward(
        &t(&[1, 4, 6, 6]),
        &t(&[4, 1, 5, 5]),
        None,
        p,
        v
    ))
    .contains("multiple of 4"));
    let dense = Conv2dParams { groups: 1, ..p };
    assert!(err(dwc::forward(
        &t(&[1, 4, 6, 8]),
        &t(&[4, 4, 5, 5]),
        None,
        dense,
        v
    ))
    .contains("groups"));
    let dil = Conv2dParams {
        dilation: 2,
        padding: 4,
        ..p
    };
    assert!(!v.applies(&t(&[1, 4, 6, 8]), &t(&[4, 1, 5, 5]), dil));
    assert!(err(dwc::grad_x(
        &t(&[1, 4, 6, 8]),
        &t(&[4, 1, 5, 5]),
        &t(&[1, 4, 6, 4]),
        None,
        p,
        v
    ))
    .contains("gy"));
}
