//! Block recomputation (gradient checkpointing) and stacking both branches through the shared
//! trunk change memory and kernel launches, not results: one bilateral training step of the
//! LSK model from the golden file's state gives the same loss, the same gradients (up to
//! float32 summation order: 1e-5 relative), the same running statistics (recomputation:
//! exactly, they are updated once, by the first run of each block; stacking: up to f32
//! rounding, 1e-6 relative, as the stacked batch norm merges its sums in another order) and
//! the same batch counters (exactly).

mod common;

use lskbb::autograd::{backward, Var};
use lskbb::checkpoint::{load_state_dict, state_dict};
use lskbb::model::{Backbone, ModelConfig, Network};
use lskbb::ops::elementwise::{add, scale};
use lskbb::ops::loss::{loss, LossKind};
use lskbb::reference::{Arr, Tol};
use lskbb::tensor_file::{Data, TensorFile};
use lskbb::Tensor;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn step(recompute: bool, stack: bool) -> (Vec<f32>, BTreeMap<String, Vec<f32>>, TensorFile) {
    let gpu = common::gpu();
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/golden/model_lsk16_dflce.safetensors"
    ));
    let g = TensorFile::load(&p).unwrap();
    let cfg = ModelConfig {
        classes: 3,
        in_ch: 3,
        backbone: Backbone::LskResnet32,
        bilateral: true,
        width: ModelConfig::PAPER_WIDTH,
        cosine_scale: None,
    };
    let model = Network::new(&gpu, &cfg, 0).unwrap();
    load_state_dict(&model.store, &g, "param.", false, &p).unwrap();
    load_state_dict(&model.store, &g, "buffer.", false, &p).unwrap();
    model.set_recompute(recompute);
    model.set_stack_branches(stack);
    let input = |k: &str| {
        let (s, d) = g.f32(k).unwrap();
        Var::constant(Tensor::from_f32(&gpu, d, s).unwrap())
    };
    let labels = |k: &str| {
        let (s, d) = g.i64(k).unwrap();
        Tensor::from_u32(&gpu, &d.iter().map(|&v| v as u32).collect::<Vec<_>>(), s).unwrap()
    };
    let kind = LossKind::Dflce {
        theta: 0.6,
        gamma: 2.0,
    };
    let z = model
        .forward(&input("input.x_c"), &input("input.x_r"), 0.7, true)
        .unwrap();
    let l = add(
        &scale(&loss(&z, &labels("input.y_c"), &kind).unwrap(), 0.7).unwrap(),
        &scale(&loss(&z, &labels("input.y_r"), &kind).unwrap(), 0.3).unwrap(),
    )
    .unwrap();
    backward(&l).unwrap();
    let grads = model
        .store
        .params
        .iter()
        .map(|(n, v)| (n.clone(), v.grad().unwrap().to_f32().unwrap()))
        .collect();
    (
        l.value().to_f32().unwrap(),
        grads,
        state_dict(&model.store).unwrap(),
    )
}

/// Asserts the two steps agree; `buffers_tol` bounds the running statistics' error.
fn assert_same_step(
    (la, ga, sa): &(Vec<f32>, BTreeMap<String, Vec<f32>>, TensorFile),
    (lb, gb, sb): &(Vec<f32>, BTreeMap<String, Vec<f32>>, TensorFile),
    buffers_tol: Tol,
) {
    common::assert_close_f32("loss", lb, &Arr::from_f32(&[1], la), LOSS_TOL);
    for (name, a) in ga {
        let b = &gb[name];
        // The norm below would let an infinity through (inf <= 1e-5·inf).
        let bad = a.iter().chain(b).find(|v| !v.is_finite());
        assert!(bad.is_none(), "grad {name}: {bad:?}");
        let num: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!(num <= 1e-5 * den + 1e-9, "grad {name}: {num} vs norm {den}");
    }
    // Parameters are untouched by the step; counters must match exactly.
    for (k, e) in &sa.tensors {
        let f = &sb.tensors[k];
        match (&e.data, &f.data) {
            (Data::F32(a), Data::F32(b)) => {
                common::assert_close_f32(k, b, &Arr::from_f32(&e.shape, a), buffers_tol);
            }
            (a, b) => assert_eq!(a, b, "{k}"),
        }
    }
}

/// The loss, a positive scalar: relative, no floor.
const LOSS_TOL: Tol = Tol::new(1e-6, 0.0);
/// Stacked batch norm sums each channel's 2·2·9·9 values or fewer in another order (runs of
/// <= 69, then trees): ≈ √(69 + 10)·2⁻²⁴·max|x| ≈ 5e-7 of the largest statistic where a mean
/// cancels, then scaled by the momentum 0.1; 1e-6 meets 5e-8 at 5e-2 of the largest.
const STACKED_BUFFERS_TOL: Tol = Tol::new(1e-6, 5e-2);

#[test]
fn recomputed_blocks_give_the_same_step() {
    assert_same_step(&step(false, true), &step(true, true), Tol::EXACT);
}

/// Branch by branch through the trunk (as BBN and the reference) against both stacked, with
/// and without recomputation (which then recomputes branch by branch).
#[test]
fn stacked_branches_give_the_same_step_as_separate_ones() {
    let separate = step(false, false);
    assert_same_step(&separate, &step(false, true), STACKED_BUFFERS_TOL);
    assert_same_step(&separate, &step(true, true), STACKED_BUFFERS_TOL);
}
