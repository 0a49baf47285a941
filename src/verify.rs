//! `lskbb verify`: runs golden files made by `reference/gen_golden.py` through the engine and
//! compares every tensor (the file layout: `reference/README.md`). A tensor a (ours) passes against b (golden) with n
//! elements when ‖a−b‖₂ ≤ r·‖b‖₂ + 1e-5·√n·s, where s is the largest |entry| of the file's
//! gradient tensors (the problem's scale: it admits gradients that nearly cancel, whose small
//! norm no float32 summation order can match relatively), r = 1e-4 for logits and losses and
//! 1e-3 for everything else.

use crate::autograd::{backward, no_grad, Var};
use crate::checkpoint::load_state_dict;
use crate::model::{Backbone, ModelConfig, Network};
use crate::ops::batchnorm::batch_norm;
use crate::ops::chanpool::channel_mean_max;
use crate::ops::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
use crate::ops::elementwise::{add, mul, scale};
use crate::ops::loss::{cb_weights, loss, LossKind};
use crate::ops::reduce::sum;
use crate::ops::sgd::{sgd_step, SgdConfig};
use crate::optim::Sgd;
use crate::tensor::Tensor;
use crate::tensor_file::TensorFile;
use crate::Gpu;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Relative tolerance for logits and loss values.
pub const R_LOGITS: f64 = 1e-4;
/// Relative tolerance for every other tensor.
pub const R_OTHER: f64 = 1e-3;
/// Weight of the absolute term, per √element, in units of the file's gradient scale.
pub const ABS: f64 = 1e-5;

/// One compared tensor.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub n: usize,
    /// ‖a−b‖₂ / ‖b‖₂.
    pub rel: f64,
    /// ‖a−b‖₂ and the bound it must not exceed.
    pub err: f64,
    pub bound: f64,
}

impl Row {
    pub fn pass(&self) -> bool {
        self.err.is_finite() && self.err <= self.bound
    }
}

/// Compares ours (`a`) with the golden `b` under relative tolerance `r` and gradient scale `s`.
pub fn compare(name: &str, a: &[f32], b: &[f32], r: f64, s: f64) -> Result<Row> {
    if a.len() != b.len() {
        bail!(
            "{name}: {} values computed, golden has {}",
            a.len(),
            b.len()
        );
    }
    // A golden entry that is not finite (the float64 reference overflowed, as the LSK model's
    // eval-mode logits do when running stats are far from the batch's) must be matched by a
    // non-finite entry of ours: float32 overflows no later than float64. The finite entries
    // are held to the criterion; a non-finite entry of ours where the golden is finite fails.
    let (mut d2, mut b2) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        match (x.is_finite(), y.is_finite()) {
            (true, true) => {
                d2 += (x as f64 - y as f64).powi(2);
                b2 += (y as f64).powi(2);
            }
            (false, false) => {}
            _ => d2 = f64::INFINITY,
        }
    }
    let (err, nb) = (d2.sqrt(), b2.sqrt());
    Ok(Row {
        name: name.to_string(),
        n: a.len(),
        rel: if nb > 0.0 { err / nb } else { err },
        err,
        bound: r * nb + ABS * (a.len() as f64).sqrt() * s,
    })
}

/// Runs one golden file; returns a row per compared tensor.
pub fn verify_file(gpu: &Arc<Gpu>, path: &Path) -> Result<Vec<Row>> {
    let f = TensorFile::load(path)?;
    let kind = f.meta("kind").with_context(|| path.display().to_string())?;
    match kind {
        "model_step" => model_step(gpu, &f, path),
        "ops" => ops(gpu, &f),
        other => bail!(
            "{}: kind '{other}' is not one of model_step, ops",
            path.display()
        ),
    }
    .with_context(|| format!("verifying {}", path.display()))
}

fn grad_scale<'a>(tensors: impl Iterator<Item = (&'a String, &'a [f32])>) -> f64 {
    tensors
        .flat_map(|(_, v)| v.iter())
        .fold(0.0f64, |m, &x| m.max((x as f64).abs()))
}

fn up(gpu: &Arc<Gpu>, f: &TensorFile, name: &str) -> Result<Tensor> {
    let (shape, data) = f.f32(name)?;
    Tensor::from_f32(gpu, data, shape)
}

fn labels(gpu: &Arc<Gpu>, f: &TensorFile, name: &str, classes: usize) -> Result<Tensor> {
    let (shape, data) = f.i64(name)?;
    let mut out = Vec::with_capacity(data.len());
    for &v in data {
        if v < 0 || v as usize >= classes {
            bail!("label tensor '{name}' holds {v}, outside 0..{classes}");
        }
        out.push(v as u32);
    }
    Tensor::from_u32(gpu, &out, shape)
}

fn num(cfg: &Value, key: &str) -> Result<f64> {
    cfg.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("config key '{key}' missing or not a number"))
}

/// The loss named in a golden config.
pub fn loss_kind(cfg: &Value, classes: usize) -> Result<LossKind> {
    let name = cfg.get("loss").and_then(Value::as_str).unwrap_or("ce");
    let gamma = cfg.get("gamma").and_then(Value::as_f64).unwrap_or(2.0) as f32;
    let theta = cfg.get("theta").and_then(Value::as_f64).unwrap_or(1.0) as f32;
    let weights = || -> Result<Vec<f32>> {
        let counts: Vec<usize> = cfg
            .get("class_counts")
            .and_then(Value::as_array)
            .context("config key 'class_counts' missing")?
            .iter()
            .map(|v| v.as_u64().map(|c| c as usize))
            .collect::<Option<_>>()
            .context("class_counts must be integers")?;
        if counts.len() != classes {
            bail!(
                "class_counts has {} entries for {classes} classes",
                counts.len()
            );
        }
        let beta = cfg.get("cb_beta").and_then(Value::as_f64).unwrap_or(0.9999);
        Ok(cb_weights(&counts, beta))
    };
    Ok(match name {
        "ce" => LossKind::Ce,
        "focal" => LossKind::Focal { gamma, alpha: None },
        "cbce" | "cb-ce" => LossKind::CbCe {
            weights: weights()?,
        },
        "dflce" => LossKind::Dflce { theta, gamma },
        "dflcsce" => LossKind::Dflcsce {
            theta,
            gamma,
            weights: weights()?,
        },
        other => bail!("loss '{other}' is not one of ce, focal, cbce, dflce, dflcsce"),
    })
}

fn model_step(gpu: &Arc<Gpu>, f: &TensorFile, path: &Path) -> Result<Vec<Row>> {
    let cfg: Value = serde_json::from_str(f.meta("config")?).context("metadata 'config'")?;
    let classes = num(&cfg, "classes")? as usize;
    let config = ModelConfig {
        classes,
        in_ch: num(&cfg, "in_ch")? as usize,
        // Files before backbones other than the ResNet-32s say lsk true/false only.
        backbone: match cfg.get("backbone") {
            Some(b) => serde_json::from_value(b.clone()).context("config 'backbone'")?,
            None if cfg.get("lsk").and_then(Value::as_bool).unwrap_or(true) => {
                Backbone::LskResnet32
            }
            None => Backbone::Resnet32,
        },
        bilateral: true,
        width: cfg
            .get("width")
            .and_then(Value::as_u64)
            .map_or(ModelConfig::PAPER_WIDTH, |w| w as usize),
        cosine_scale: None,
    };
    let alpha = num(&cfg, "alpha")? as f32;
    let kind = loss_kind(&cfg, classes)?;
    let model = Network::new(gpu, &config, 0)?;
    let store = &model.store;
    let n = load_state_dict(store, f, "param.", false, path)?
        + load_state_dict(store, f, "buffer.", false, path)?;
    let want = store.params.len() + store.buffers.len();
    if n != want {
        bail!("golden file holds {n} of the model's {want} parameters and buffers");
    }
    let x_c = Var::constant(up(gpu, f, "input.x_c")?);
    let x_r = Var::constant(up(gpu, f, "input.x_r")?);
    let y_c = labels(gpu, f, "input.y_c", classes)?;
    let y_r = labels(gpu, f, "input.y_r", classes)?;
    let z = model.forward(&x_c, &x_r, alpha, true)?;
    let l = add(
        &scale(&loss(&z, &y_c, &kind)?, alpha)?,
        &scale(&loss(&z, &y_r, &kind)?, 1.0 - alpha)?,
    )?;
    backward(&l)?;
    let s = grad_scale(
        f.tensors
            .keys()
            .filter(|k| k.starts_with("expect.grad."))
            .map(|k| f.f32(k).map(|(_, d)| (k, d)))
            .collect::<Result<Vec<_>>>()?
            .into_iter(),
    );
    let mut rows = vec![
        compare(
            "logits",
            &z.value().to_f32()?,
            f.f32("expect.logits")?.1,
            R_LOGITS,
            s,
        )?,
        compare(
            "loss",
            &l.value().to_f32()?,
            f.f32("expect.loss")?.1,
            R_LOGITS,
            s,
        )?,
    ];
    for (name, p) in &store.params {
        let g = p
            .grad()
            .with_context(|| format!("parameter {name} received no gradient"))?;
        let key = format!("expect.grad.{name}");
        rows.push(compare(
            &format!("grad.{name}"),
            &g.to_f32()?,
            f.f32(&key)?.1,
            R_OTHER,
            s,
        )?);
    }
    for (name, b) in &store.buffers {
        let key = format!("expect.buffer.{name}");
        rows.push(compare(
            &format!("buffer.{name}"),
            &b.to_f32()?,
            f.f32(&key)?.1,
            R_OTHER,
            s,
        )?);
    }
    // Inference uses the parameters before the SGD step and the running stats after it.
    let zi = no_grad(|| model.infer(&x_c))?;
    rows.push(compare(
        "infer_logits",
        &zi.value().to_f32()?,
        f.f32("expect.infer_logits")?.1,
        R_LOGITS,
        s,
    )?);
    let sgd_cfg = cfg.get("sgd").context("config key 'sgd' missing")?;
    let mut opt = Sgd::new(
        store,
        SgdConfig {
            lr: num(sgd_cfg, "lr")? as f32,
            momentum: num(sgd_cfg, "momentum")? as f32,
            weight_decay: num(sgd_cfg, "weight_decay")? as f32,
            nesterov: sgd_cfg
                .get("nesterov")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
    )?;
    opt.step(store)?;
    // The reference's first SGD step from a fresh momentum buffer is p − lr·(g + wd·p)
    // (PyTorch seeds the buffer with the first gradient). The golden holds p and g, so the
    // expected parameters are computed here in f64 rather than stored a second time.
    let (lr, wd) = (num(sgd_cfg, "lr")?, num(sgd_cfg, "weight_decay")?);
    for (name, p) in &store.params {
        let p0 = f.f32(&format!("param.{name}"))?.1;
        let g = f.f32(&format!("expect.grad.{name}"))?.1;
        let want: Vec<f32> = p0
            .iter()
            .zip(g)
            .map(|(&p, &g)| (p as f64 - lr * (g as f64 + wd * p as f64)) as f32)
            .collect();
        rows.push(compare(
            &format!("sgd.{name}"),
            &p.value().to_f32()?,
            &want,
            R_OTHER,
            s,
        )?);
    }
    Ok(rows)
}

/// The parameter group of a model parameter: its residual block (`layer2.4`, `cb_block`), the
/// stem (`conv1`, `bn1`) or `fc`.
fn group_of(param: &str) -> String {
    let mut parts = param.split('.');
    let first = parts.next().unwrap_or(param);
    match first {
        "conv1" | "bn1" => "stem".to_string(),
        _ if first.starts_with("layer") => match parts.next() {
            Some(block) => format!("{first}.{block}"),
            None => first.to_string(),
        },
        _ => first.to_string(),
    }
}

/// Where the error of a failing model step starts: the deepest parameter group (counting
/// from the input) whose gradient fails, or `None` when every gradient passes.
///
/// Gradients flow from the loss back to the input, so a group's gradient error reaches every
/// group below it. A start in one block with every group below failing and every group above
/// passing is what a near-tie looks like (a channel max whose top two values the float32
/// engine ordered the other way from the float64 reference, in that block); a bug in an op
/// shows wherever the op is used, and in the forward values (logits, loss) when it is there.
pub fn error_start(rows: &[Row]) -> Option<String> {
    let mut groups: Vec<(String, bool)> = Vec::new();
    for r in rows {
        let Some(param) = r.name.strip_prefix("grad.") else {
            continue;
        };
        let g = group_of(param);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, failed)) => *failed |= !r.pass(),
            None => groups.push((g, !r.pass())),
        }
    }
    let start = groups.iter().rposition(|(_, failed)| *failed)?;
    let below = groups[..start].iter().filter(|(_, f)| *f).count();
    let forward = rows
        .iter()
        .filter(|r| r.name == "logits" || r.name == "loss")
        .any(|r| !r.pass());
    Some(format!(
        "gradients start to fail at {} (the deepest failing parameter group; {below} of the \
         {start} groups below it fail too, none above it){}",
        groups[start].0,
        if forward {
            "; the forward values (logits, loss) fail too, so the error is already in the \
             forward pass"
        } else {
            "; the forward values pass, so it arises in the backward pass there: a near-tie \
             in that block if every group below fails, a bug in an op otherwise"
        }
    ))
}

/// Σ y·gy as a scalar Var: its gradient through an op is that op's backward at gy.
fn dot_loss(y: &Var, gy: Tensor) -> Result<Var> {
    let prod = mul(y, &Var::constant(gy))?;
    let axes: Vec<usize> = (0..prod.shape().len()).collect();
    sum(&prod, &axes, false)
}

fn ops(gpu: &Arc<Gpu>, f: &TensorFile) -> Result<Vec<Row>> {
    let s = grad_scale(
        f.tensors
            .keys()
            .filter(|k| (k.contains(".grad_") && !k.ends_with(".grad_y")) || k.ends_with(".grad"))
            .map(|k| f.f32(k).map(|(_, d)| (k, d)))
            .collect::<Result<Vec<_>>>()?
            .into_iter(),
    );
    let mut rows = Vec::new();
    let cases: Value =
        serde_json::from_str(f.meta("conv_cases")?).context("metadata 'conv_cases'")?;
    for c in cases.as_array().context("conv_cases must be a list")? {
        let prefix = c
            .get("prefix")
            .and_then(Value::as_str)
            .context("conv case prefix")?;
        let p = Conv2dParams {
            stride: num(c, "stride")? as usize,
            padding: num(c, "padding")? as usize,
            dilation: num(c, "dilation")? as usize,
            groups: num(c, "groups")? as usize,
        };
        let bias = c.get("bias").and_then(Value::as_bool).unwrap_or(false);
        let x = up(gpu, f, &format!("{prefix}x"))?;
        let w = up(gpu, f, &format!("{prefix}w"))?;
        let b = if bias {
            Some(up(gpu, f, &format!("{prefix}b"))?)
        } else {
            None
        };
        let y = conv2d_forward(&x, &w, b.as_ref(), p)?;
        let gy = up(gpu, f, &format!("{prefix}grad_y"))?;
        let (gx, gw, gb) = conv2d_backward(&x, &w, bias, &gy, p)?;
        let mut out = vec![("y", y), ("grad_x", gx), ("grad_w", gw)];
        if let Some(gb) = gb {
            out.push(("grad_b", gb));
        }
        for (n, t) in out {
            let key = format!("{prefix}{n}");
            rows.push(compare(&key, &t.to_f32()?, f.f32(&key)?.1, R_OTHER, s)?);
        }
    }
    if f.tensors.contains_key("bn.x") {
        let x = Var::param(up(gpu, f, "bn.x")?);
        let g = Var::param(up(gpu, f, "bn.gamma")?);
        let b = Var::param(up(gpu, f, "bn.beta")?);
        let c = g.shape()[0];
        let (rm, rv) = (
            Tensor::zeros(gpu, &[c])?,
            Tensor::from_f32(gpu, &vec![1.0; c], &[c])?,
        );
        let y = batch_norm(&x, &g, &b, &rm, &rv, true, 0.1, 1e-5)?;
        backward(&dot_loss(&y, up(gpu, f, "bn.grad_y")?)?)?;
        for (n, t) in [
            ("bn.y", y.value().clone()),
            ("bn.grad_x", x.grad().context("bn x grad")?),
            ("bn.grad_gamma", g.grad().context("bn gamma grad")?),
            ("bn.grad_beta", b.grad().context("bn beta grad")?),
        ] {
            rows.push(compare(n, &t.to_f32()?, f.f32(n)?.1, R_OTHER, s)?);
        }
    }
    if f.tensors.contains_key("chanpool.x") {
        let x = Var::param(up(gpu, f, "chanpool.x")?);
        let y = channel_mean_max(&x)?;
        backward(&dot_loss(&y, up(gpu, f, "chanpool.grad_y")?)?)?;
        for (n, t) in [
            ("chanpool.y", y.value().clone()),
            ("chanpool.grad_x", x.grad().context("chanpool x grad")?),
        ] {
            rows.push(compare(n, &t.to_f32()?, f.f32(n)?.1, R_OTHER, s)?);
        }
    }
    if let Some(losses) = f.metadata.get("losses") {
        let losses: Value = serde_json::from_str(losses).context("metadata 'losses'")?;
        let map = losses
            .as_object()
            .context("metadata 'losses' must be an object")?;
        for (name, settings) in map {
            let (shape, _) = f.f32(&format!("loss.{name}.logits"))?;
            let classes = shape[1];
            // An entry names its loss (`focal_g1` is the focal loss at gamma 1), or is named
            // after it.
            let mut cfg = settings.clone();
            if let Some(o) = cfg.as_object_mut() {
                o.entry("loss")
                    .or_insert_with(|| Value::String(name.clone()));
            }
            let kind = loss_kind(&cfg, classes)?;
            let z = Var::param(up(gpu, f, &format!("loss.{name}.logits"))?);
            let y = labels(gpu, f, &format!("loss.{name}.y"), classes)?;
            let l = loss(&z, &y, &kind)?;
            backward(&l)?;
            let key = format!("loss.{name}.value");
            rows.push(compare(
                &key,
                &l.value().to_f32()?,
                f.f32(&key)?.1,
                R_LOGITS,
                s,
            )?);
            let key = format!("loss.{name}.grad");
            let g = z.grad().context("loss logits grad")?;
            rows.push(compare(&key, &g.to_f32()?, f.f32(&key)?.1, R_OTHER, s)?);
        }
    }
    if let Some(sgd) = f.metadata.get("sgd") {
        let sgd: Value = serde_json::from_str(sgd).context("metadata 'sgd'")?;
        let cfg = SgdConfig {
            lr: num(&sgd, "lr")? as f32,
            momentum: num(&sgd, "momentum")? as f32,
            weight_decay: num(&sgd, "weight_decay")? as f32,
            nesterov: sgd
                .get("nesterov")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        let p = up(gpu, f, "sgd.p")?;
        let buf = Tensor::zeros(gpu, p.shape())?;
        for i in 0..num(&sgd, "steps")? as usize {
            let g = up(gpu, f, &format!("sgd.grad{i}"))?;
            sgd_step(&p, &g, &buf, &cfg)?;
            let key = format!("sgd.p{}", i + 1);
            rows.push(compare(&key, &p.to_f32()?, f.f32(&key)?.1, R_OTHER, s)?);
        }
    }
    Ok(rows)
}
