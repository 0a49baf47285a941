//! Burn's version of `lskbb bench` / `bench/torch_step.py`: the same bilateral training step
//! (both branches forward through the shared trunk, the mixed logits, the bilateral loss,
//! backward, SGD with momentum and weight decay) on random data, timed on Burn's wgpu backend.
//! Prints one JSON line.
//!
//! usage: lskbb-burn-bench [--image-size 224] [--batch-size 32] [--lsk | --plain]
//!                         [--steps 10] [--warmup 2]

mod model;

use std::time::Instant;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, DeviceKind, Distribution, Int, Tensor, TensorData};
use model::Network;

const CLASSES: usize = 8;
const CHANNELS: usize = 3;
/// The paper's ResNet-32 width (stem and stage 1).
const WIDTH: usize = 16;
const ALPHA: f64 = 0.5;
/// DFLCE's focal weight and focal exponent (--lsk, method lskbb).
const THETA: f64 = 0.5;
const GAMMA: f64 = 2.0;
/// SGD as in reference/step.py: lr 0.05, momentum 0.9 (no dampening), weight decay 2e-4.
const LR: f64 = 0.05;
const MOMENTUM: f64 = 0.9;
const WEIGHT_DECAY: f32 = 2e-4;

struct Args {
    image_size: usize,
    batch: usize,
    lsk: bool,
    steps: usize,
    warmup: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        image_size: 224,
        batch: 32,
        lsk: true,
        steps: 10,
        warmup: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: '{v}' is not a count"))
        };
        match flag.as_str() {
            "--image-size" => args.image_size = value("--image-size")?,
            "--batch-size" => args.batch = value("--batch-size")?,
            "--steps" => args.steps = value("--steps")?,
            "--warmup" => args.warmup = value("--warmup")?,
            "--lsk" => args.lsk = true,
            "--plain" => args.lsk = false,
            _ => return Err(format!("unknown argument '{flag}'")),
        }
    }
    if args.steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    Ok(args)
}

/// log p_y of each row of the logits z [B, C] for the labels y [B].
fn log_p_y(z: Tensor<2>, y: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(z, 1)
        .gather(1, y.unsqueeze_dim(1))
        .squeeze_dim(1)
}

/// Cross-entropy (lsk = false) or DFLCE = theta * focal + (1 - theta) * CE (lsk = true), each
/// a mean over the batch, as in reference/losses.py.
fn loss(z: Tensor<2>, y: Tensor<1, Int>, lsk: bool) -> Tensor<1> {
    let logp = log_p_y(z, y);
    let ce = logp.clone().mean().neg();
    if !lsk {
        return ce;
    }
    let focal = logp
        .clone()
        .exp()
        .neg()
        .add_scalar(1.0)
        .powf_scalar(GAMMA)
        .mul(logp)
        .mean()
        .neg();
    focal.mul_scalar(THETA) + ce.mul_scalar(1.0 - THETA)
}

/// Labels in 0..CLASSES from a fixed-seed xorshift, as host data.
fn labels(n: usize, seed: u64, device: &Device) -> Tensor<1, Int> {
    let mut s = seed;
    let y: Vec<i64> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % CLASSES as u64) as i64
        })
        .collect();
    Tensor::from_data(TensorData::new(y, [n]), device)
}

/// The two branches' inputs: x_c, y_c from the uniform sampler, x_r, y_r from the reversed one.
struct Batch {
    x_c: Tensor<4>,
    x_r: Tensor<4>,
    y_c: Tensor<1, Int>,
    y_r: Tensor<1, Int>,
}

/// One bilateral step, to completion: both branches forward, the loss
/// alpha * L(z, y_c) + (1 - alpha) * L(z, y_r), backward, SGD; then the loss read back (as a
/// training loop logs it) and the device synchronised, so the SGD update has run too.
fn step(
    model: Network,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    lsk: bool,
    device: &Device,
) -> (Network, f32) {
    let z = model.forward(batch.x_c.clone(), batch.x_r.clone(), ALPHA);
    let l = loss(z.clone(), batch.y_c.clone(), lsk).mul_scalar(ALPHA)
        + loss(z, batch.y_r.clone(), lsk).mul_scalar(1.0 - ALPHA);
    let grads = GradientsParams::from_grads(l.backward(), &model);
    let model = optim.step(LR, model, grads);
    let value: f32 = l.into_scalar();
    device.sync().expect("the device failed a step");
    (model, value)
}

/// `text` as a JSON string literal.
fn json_str(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("lskbb-burn-bench: {e}");
        std::process::exit(2);
    });
    let device = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let identity = device.identity();
    device.seed(0);
    let (b, s) = (args.batch, args.image_size);

    let mut model = Network::new(CLASSES, args.lsk, CHANNELS, WIDTH, &device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(MOMENTUM)
                .with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(WEIGHT_DECAY)))
        .init();
    let normal = Distribution::Normal(0.0, 1.0);
    let batch = Batch {
        x_c: Tensor::random([b, CHANNELS, s, s], normal, &device),
        x_r: Tensor::random([b, CHANNELS, s, s], normal, &device),
        y_c: labels(b, 0x9e37_79b9_7f4a_7c15, &device),
        y_r: labels(b, 0xd1b5_4a32_d192_ed03, &device),
    };

    for _ in 0..args.warmup {
        (model, _) = step(model, &mut optim, &batch, args.lsk, &device);
    }
    let mut step_ms = Vec::with_capacity(args.steps);
    let mut last_loss = f32::NAN;
    for _ in 0..args.steps {
        let t = Instant::now();
        (model, last_loss) = step(model, &mut optim, &batch, args.lsk, &device);
        step_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ms = step_ms.iter().sum::<f64>() / args.steps as f64;
    let step_ms: Vec<String> = step_ms.iter().map(|t| format!("{t:.1}")).collect();
    let adapter = identity.map_or(String::new(), |i| i.name);
    println!(
        "{{\"impl\": \"burn\", \"burn\": \"{}\", \"adapter\": {}, \
         \"method\": \"{}\", \"lsk\": {}, \"image_size\": {s}, \"batch\": {b}, \"steps\": {}, \
         \"warmup\": {}, \"ms_per_step\": {ms}, \"step_ms\": [{}], \"images_per_s\": {}, \
         \"loss\": {last_loss}}}",
        env!("BURN_VERSION"),
        json_str(&adapter),
        if args.lsk { "lskbb" } else { "bbn" },
        args.lsk,
        args.steps,
        args.warmup,
        step_ms.join(", "),
        2.0 * b as f64 * 1e3 / ms,
    );
}
