//! `lskbb eval` and `lskbb predict`: a checkpoint's scores on a dataset split, and its
//! predictions for image files. Each takes only the flags that apply to it; a checkpoint from
//! `lskbb train` stores its data settings, and flags that would change them are refused.

use super::data::{eval_data, predict_data, LoadArgs, PipelineArgs, SourceArgs};
use super::explain::Explainer;
use super::table::print_metrics;
use anyhow::{bail, Context, Result};
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use lskbb::checkpoint::{class_names, load_model, output_names};
use lskbb::data::{file_preprocessor, files_below, image_files, BatchLoader, Dataset, Split};
use lskbb::gpu::AdapterChoice;
use lskbb::tensor_file::{write_atomic, TensorFile};
use lskbb::train::eval::{argmax, evaluate, probabilities};
use lskbb::train::plot;
use lskbb::Gpu;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `eval --split`.
#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Test,
    Val,
}

#[derive(Args)]
#[command(
    after_help = "A checkpoint from `lskbb train` stores the dataset kind, split and \
    preprocessing it was trained with, and eval uses them: of the data flags only --data, \
    --skip-bad-images, --workers and --cache-mb apply to it. The others are for a checkpoint \
    from elsewhere (a PyTorch state_dict)."
)]
pub struct EvalArgs {
    /// A checkpoint written by `lskbb train` (or a PyTorch state_dict in safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    load: LoadArgs,
    /// Which balanced set to score: test, or val (the run's validation split).
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    batch_size: usize,
    /// Folder for eval-<checkpoint>.json and eval-<checkpoint>-confusion.png (default: the
    /// checkpoint's folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Numbers the dataset's classes as the checkpoint's outputs: by name where the checkpoint
/// names its classes (a class it lacks is an error; one the data lacks has no images), else
/// in the data's order.
fn match_classes(ds: &mut Dataset, f: &TensorFile, path: &Path, outputs: usize) -> Result<()> {
    let Some(classes) = class_names(f, path, outputs)? else {
        eprintln!(
            "warning: {} names no classes; the data's classes ({}) are taken as its outputs in order",
            path.display(),
            ds.classes.join(", ")
        );
        return Ok(());
    };
    ds.relabel(&classes).map_err(|unknown| {
        let data = ds
            .config
            .root
            .as_ref()
            .map_or("the synthetic set".into(), |r| r.display().to_string());
        anyhow::anyhow!(
            "{data} has class(es) {} that {} was not trained on (its classes: {}); eval scores \
             a checkpoint on its own classes only",
            unknown.join(", "),
            path.display(),
            classes.join(", ")
        )
    })
}

pub fn eval(choice: &AdapterChoice, a: EvalArgs) -> Result<bool> {
    let split = match a.split {
        SplitArg::Test => Split::Test,
        SplitArg::Val => Split::Val,
    };
    let gpu = Gpu::new(choice)?;
    let (model, f) = load_model(&gpu, &a.checkpoint)?;
    let data = eval_data(
        &f,
        &a.checkpoint,
        &a.source,
        &a.pipeline,
        &a.load,
        model.config.in_ch,
    )?;
    let mut ds = Dataset::open(&data)?;
    match_classes(&mut ds, &f, &a.checkpoint, model.config.classes)?;
    let ds = Arc::new(ds);
    let loader = BatchLoader::eval(ds.clone(), split, a.batch_size)?;
    let ev = evaluate(&model, &loader, &ds)?;
    println!(
        "{} on the {} set of {} ({} images), adapter {}",
        a.checkpoint.display(),
        split.name(),
        ds.kind.name(),
        ev.pairs.len(),
        gpu.describe()
    );
    print_metrics(&ev.metrics);
    let out = a.out.unwrap_or_else(|| {
        a.checkpoint
            .parent()
            .map_or(PathBuf::from("."), Path::to_path_buf)
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let stem = a
        .checkpoint
        .file_stem()
        .map_or("checkpoint".into(), |s| s.to_string_lossy().into_owned());
    let report = json!({
        "checkpoint": a.checkpoint.display().to_string(),
        "split": split.name(),
        "accuracy": ev.metrics.accuracy,
        "balanced_accuracy": ev.metrics.balanced_accuracy,
        "auc": ev.metrics.auc,
        "metrics": ev.metrics,
        "classes": ds.classes,
        "adapter": gpu.describe(),
    });
    let json_path = out.join(format!("eval-{stem}.json"));
    write_atomic(&json_path, &serde_json::to_vec_pretty(&report)?)?;
    plot::confusion(
        &out.join(format!("eval-{stem}-confusion.png")),
        &ds.classes,
        &ev.metrics.confusion,
    )?;
    println!("written: {}", json_path.display());
    Ok(true)
}

#[derive(Args)]
#[command(
    after_help = "A checkpoint from `lskbb train` stores the preprocessing it was \
    trained with, and predict uses it: --dataset, --image-size, --augment and --normalize are \
    for a checkpoint from elsewhere (a PyTorch state_dict)."
)]
pub struct PredictArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Image files or folders (searched recursively for png, jpg, jpeg, tif, tiff, bmp).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Print JSON (one object per image) instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    batch_size: usize,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Skip unreadable images (each named on stderr) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    /// Write DIR/<image stem>.png for each image: the Grad-CAM map of the predicted class over
    /// the image, and the LSK modules' choice between their 5x5 and dilated 7x7 branches.
    #[arg(long, value_name = "DIR")]
    explain: Option<PathBuf>,
}

/// The images named on the command line: files as given, folders walked recursively (each
/// folder once, however many links lead to it).
fn collect_images(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if p.is_dir() {
        out.extend(image_files(files_below(p)?));
    } else if p.exists() {
        out.push(p.to_path_buf());
    } else {
        bail!("{} does not exist", p.display());
    }
    Ok(())
}

pub fn predict(choice: &AdapterChoice, a: PredictArgs) -> Result<bool> {
    let mut files = Vec::new();
    for p in &a.inputs {
        collect_images(p, &mut files)?;
    }
    if files.is_empty() {
        bail!("no images (png, jpg, jpeg, tif, tiff, bmp) under the given paths");
    }
    let mut explainer = a.explain.as_deref().map(Explainer::new).transpose()?;
    let gpu = Gpu::new(choice)?;
    let (model, f) = load_model(&gpu, &a.checkpoint)?;
    let data = predict_data(
        &f,
        &a.checkpoint,
        &a.pipeline,
        a.skip_bad_images,
        model.config.in_ch,
    )?;
    let pre = file_preprocessor(&data)?;
    let classes = output_names(&f, &a.checkpoint, model.config.classes)?;
    let mut rows = Vec::new();
    for chunk in files.chunks(a.batch_size) {
        let mut x = Vec::new();
        let mut good = Vec::new();
        for file in chunk {
            match pre.prepare_file(file) {
                Ok(img) => {
                    x.extend(img);
                    good.push(file.clone());
                }
                Err(e) if a.skip_bad_images => {
                    eprintln!(
                        "warning: skipping unreadable image {}: {e:#}",
                        file.display()
                    );
                }
                Err(e) => return Err(e),
            }
        }
        if good.is_empty() {
            continue;
        }
        let (probs, pictures) = match explainer.as_mut() {
            Some(e) => {
                let (probs, pictures) = e.batch(&gpu, &model, &pre, &good, &x, &classes)?;
                (probs, pictures.into_iter().map(Some).collect())
            }
            None => {
                let shape = [good.len(), pre.channels(), pre.size(), pre.size()];
                (probabilities(&model, &x, shape)?, vec![None; good.len()])
            }
        };
        rows.extend(good.into_iter().zip(probs).zip(pictures));
    }
    if a.json {
        for ((file, p), picture) in &rows {
            let best = argmax(p);
            let probs: serde_json::Map<String, serde_json::Value> = classes
                .iter()
                .zip(p)
                .map(|(c, &v)| (c.clone(), json!(v)))
                .collect();
            let mut row = json!({"file": file.display().to_string(), "class": classes[best], "probability": p[best], "probabilities": probs});
            if let Some(picture) = picture {
                row["explanation"] = json!(picture.display().to_string());
            }
            println!("{row}");
        }
    } else {
        let header: Vec<String> = classes.iter().map(|c| format!("{c:>12.12}")).collect();
        println!("{:<40} {:<16} {}", "file", "class", header.join(" "));
        for ((file, p), _) in &rows {
            let cells: Vec<String> = p.iter().map(|v| format!("{v:>12.4}")).collect();
            println!(
                "{:<40} {:<16} {}",
                file.display(),
                classes[argmax(p)],
                cells.join(" ")
            );
        }
        if let Some(dir) = &a.explain {
            println!("explanations: {} pictures in {}", rows.len(), dir.display());
        }
    }
    Ok(true)
}
