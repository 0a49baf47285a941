//! Augmentation and normalisation (issue 17): each transform against a reference computed
//! here from the pre-crop pixels, the random decisions as a fixed function of the loader's
//! (seed, sampler, epoch, batch, position) stream, `--normalize dataset` statistics, the
//! per-dataset defaults and the pipeline old checkpoints load with. CPU only.

use lskbb::data::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lskbb-augment-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An RGB PNG whose every byte differs, so any misplaced pixel shows.
fn write_png(path: &Path, w: u32, h: u32, tag: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 31) as u8;
        image::Rgb([v.wrapping_add(tag), v.wrapping_mul(3) ^ tag, 255 - v])
    });
    img.save(path).unwrap();
}

/// An ImageFolder of 2 classes, 3 training and 1 test image each, w×h pixels.
fn folder(name: &str, w: u32, h: u32) -> PathBuf {
    let root = temp_dir(name);
    for c in 0..2u8 {
        for i in 0..3u8 {
            write_png(&root.join(format!("train/c{c}/{i}.png")), w, h, 40 * c + i);
        }
        write_png(&root.join(format!("test/c{c}/t.png")), w, h, 90 + c);
    }
    root
}

fn open(root: &Path, augment: &str, normalize: Normalize) -> Dataset {
    Dataset::open(&DataConfig {
        root: Some(root.to_path_buf()),
        image_size: 8,
        augment: Some(augment.parse().unwrap()),
        normalize: Some(normalize),
        workers: Some(2),
        ..DataConfig::default()
    })
    .unwrap()
}

/// The S×S window of `px` at (x0, y0) as [channel][row][column] in [0, 1].
fn window(px: &Pixels, x0: usize, y0: usize, s: usize) -> Vec<Vec<Vec<f32>>> {
    (0..px.c)
        .map(|c| {
            (0..s)
                .map(|y| {
                    (0..s)
                        .map(|x| px.data[((y0 + y) * px.w + x0 + x) * px.c + c] as f32 / 255.0)
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn flat(img: &[Vec<Vec<f32>>]) -> Vec<f32> {
    img.iter().flatten().flatten().copied().collect()
}

/// Clockwise quarter turn: transpose, then reverse every row.
fn turn(img: &[Vec<Vec<f32>>]) -> Vec<Vec<Vec<f32>>> {
    img.iter()
        .map(|p| {
            let n = p.len();
            (0..n)
                .map(|i| (0..n).map(|j| p[j][i]).rev().collect())
                .collect()
        })
        .collect()
}

fn run(ds: &Dataset, d: &Draw) -> Vec<f32> {
    let mut out = vec![0.0; ds.preprocessor().image_len()];
    ds.preprocessor()
        .prepare_drawn(&ds.train[0].source, d, &mut out)
        .unwrap();
    out
}

#[test]
fn each_transform_matches_a_reference_pixel_for_pixel() {
    let root = folder("pixels", 10, 7);
    // crop: shorter side to 8·256/224 = 9, so a 13×9 pre-crop image and a window that moves
    let ds = open(&root, "crop,flip,vflip,rot90,color", Normalize::None);
    let px = ds.preprocessor().base(&ds.train[0].source).unwrap();
    assert_eq!((px.w, px.h, px.c), (13, 9, 3));
    let s = 8;
    let plain = Draw {
        x0: 4,
        y0: 1,
        ..Draw::centre(px.w, px.h, s)
    };
    let win = window(&px, 4, 1, s);
    assert_eq!(run(&ds, &plain), flat(&win), "crop");
    let centre = window(&px, 2, 0, s);
    assert_eq!(
        ds.eval_image(Split::Train, 0).unwrap(),
        flat(&centre),
        "evaluation reads the centre window"
    );

    let mirrored: Vec<Vec<Vec<f32>>> = win
        .iter()
        .map(|p| {
            p.iter()
                .map(|r| r.iter().rev().copied().collect())
                .collect()
        })
        .collect();
    let d = Draw {
        flip: true,
        ..plain
    };
    assert_eq!(run(&ds, &d), flat(&mirrored), "flip");

    let upside: Vec<Vec<Vec<f32>>> = win
        .iter()
        .map(|p| p.iter().rev().cloned().collect())
        .collect();
    let d = Draw {
        vflip: true,
        ..plain
    };
    assert_eq!(run(&ds, &d), flat(&upside), "vflip");

    let mut turned = win.clone();
    for k in 1..4u8 {
        turned = turn(&turned);
        let d = Draw {
            quarter_turns: k,
            ..plain
        };
        assert_eq!(run(&ds, &d), flat(&turned), "rot90 x{k}");
    }
    // all three: flip, then vflip, then the turn
    let d = Draw {
        flip: true,
        vflip: true,
        quarter_turns: 1,
        ..plain
    };
    let both: Vec<Vec<Vec<f32>>> = mirrored
        .iter()
        .map(|p| p.iter().rev().cloned().collect())
        .collect();
    assert_eq!(run(&ds, &d), flat(&turn(&both)), "flip+vflip+rot90");

    // color: v·b clamped, then μ + c·(v − μ) clamped, μ the mean of the window
    let (b, c) = (1.15f32, 0.85f32);
    let bright: Vec<f32> = flat(&win).iter().map(|v| (v * b).clamp(0.0, 1.0)).collect();
    let mu = (bright.iter().map(|&v| v as f64).sum::<f64>() / bright.len() as f64) as f32;
    let want: Vec<f32> = bright
        .iter()
        .map(|v| (mu + c * (v - mu)).clamp(0.0, 1.0))
        .collect();
    let d = Draw {
        brightness: b,
        contrast: c,
        ..plain
    };
    assert_eq!(run(&ds, &d), want, "color");

    // a window that does not fit is an error, not a panic
    let mut out = vec![0.0; ds.preprocessor().image_len()];
    let bad = Draw { x0: 6, ..plain };
    assert!(ds
        .preprocessor()
        .prepare_drawn(&ds.train[0].source, &bad, &mut out)
        .is_err());
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn normalisation_imagenet_and_none() {
    let root = folder("norm", 8, 8);
    // without crop the pre-crop image is S×S: the window is the whole image
    let none = open(&root, "none", Normalize::None);
    let px = none.preprocessor().base(&none.train[0].source).unwrap();
    assert_eq!((px.w, px.h), (8, 8));
    let raw = flat(&window(&px, 0, 0, 8));
    assert_eq!(none.eval_image(Split::Train, 0).unwrap(), raw);
    let imagenet = open(&root, "none", Normalize::Imagenet);
    let want: Vec<f32> = raw
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = i / 64;
            (v - IMAGENET_MEAN[c]) * (1.0 / IMAGENET_STD[c])
        })
        .collect();
    assert_eq!(imagenet.eval_image(Split::Train, 0).unwrap(), want);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn dataset_statistics_come_from_the_training_split_deterministically() {
    let root = folder("stats", 8, 8);
    let ds = open(&root, "none", Normalize::Dataset);
    // the reference: every training image's centre window, summed in f64
    let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0f64);
    for s in &ds.train {
        let px = ds.preprocessor().base(&s.source).unwrap();
        for (i, &b) in px.data.iter().enumerate() {
            let v = (b as f32 / 255.0) as f64;
            sum[i % 3] += v;
            sq[i % 3] += v * v;
        }
        n += 64.0;
    }
    let (mean, std) = ds.preprocessor().statistics();
    for c in 0..3 {
        let m = sum[c] / n;
        assert!(
            (mean[c] as f64 - m).abs() < 1e-6,
            "mean {c}: {mean:?} vs {m}"
        );
        let sd = (sq[c] / n - m * m).sqrt();
        assert!(
            (std[c] as f64 - sd).abs() < 1e-5,
            "std {c}: {std:?} vs {sd}"
        );
    }
    // stored in the config (and so in the checkpoint), equal with another thread count
    assert_eq!(ds.config.mean.as_deref(), Some(mean));
    assert_eq!(ds.config.std.as_deref(), Some(std));
    let one = Dataset::open(&DataConfig {
        workers: Some(1),
        ..ds.config.clone()
    })
    .unwrap();
    assert_eq!(one.preprocessor().statistics(), (mean, std));
    // a saved config is used as it is, never recomputed (eval and predict rely on this)
    let fixed = Dataset::open(&DataConfig {
        mean: Some(vec![0.5, 0.25, 0.125]),
        std: Some(vec![2.0, 4.0, 8.0]),
        ..ds.config.clone()
    })
    .unwrap();
    let (m, s) = fixed.preprocessor().statistics();
    assert_eq!((m, s), (&[0.5, 0.25, 0.125][..], &[2.0, 4.0, 8.0][..]));
    let x = fixed.eval_image(Split::Test, 0).unwrap();
    let raw = open(&root, "none", Normalize::None)
        .eval_image(Split::Test, 0)
        .unwrap();
    assert_eq!(x[0], (raw[0] - 0.5) * 0.5);
    // predicting files without a training split needs the statistics saved
    let err = file_preprocessor(&DataConfig {
        normalize: Some(Normalize::Dataset),
        ..DataConfig::default()
    })
    .err()
    .unwrap();
    assert!(
        format!("{err:#}").contains("--normalize dataset"),
        "{err:#}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

fn collect(loader: &BatchLoader, epoch: u64, start: usize) -> Vec<Batch> {
    loader
        .epoch(epoch, start)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn random_choices_are_a_function_of_seed_epoch_batch_and_position() {
    let cfg = DataConfig {
        seed: 5,
        image_size: 8,
        test_per_class: 4,
        synthetic_train_per_class: 20,
        augment: Some("crop,flip,vflip,rot90,color".parse().unwrap()),
        workers: Some(2),
        ..DataConfig::default()
    };
    let ds = Arc::new(Dataset::open(&cfg).unwrap());
    let loader = BatchLoader::train(ds.clone(), SamplerKind::Uniform, 6).unwrap();
    let a = collect(&loader, 1, 0);
    assert_eq!(collect(&loader, 1, 3), a[3..].to_vec(), "resume at batch 3");
    let ds1 = Arc::new(
        Dataset::open(&DataConfig {
            workers: Some(1),
            ..cfg.clone()
        })
        .unwrap(),
    );
    let one = BatchLoader::train(ds1, SamplerKind::Uniform, 6).unwrap();
    assert_eq!(collect(&one, 1, 0), a, "one worker");
    // each image is the draw of Rng::from_parts(seed, "AU", sampler, epoch, batch, position)
    let pre = ds.preprocessor();
    let b = &a[2];
    for (p, &s) in b.samples.iter().enumerate() {
        let src = &ds.train[s].source;
        let px = pre.base(src).unwrap();
        let mut rng = Rng::from_parts(&[5, 0x4155, SamplerKind::Uniform as u64, 1, 2, p as u64]);
        let d = Draw::random(pre.augment(), &mut rng, px.w, px.h, 8);
        let mut out = vec![0.0; pre.image_len()];
        pre.prepare_drawn(src, &d, &mut out).unwrap();
        assert_eq!(
            &b.x[p * out.len()..(p + 1) * out.len()],
            &out[..],
            "position {p}"
        );
    }
    // the draws cover every choice
    let draws: Vec<Draw> = (0..64)
        .map(|k| Draw::random(pre.augment(), &mut Rng::from_parts(&[k]), 9, 9, 8))
        .collect();
    assert!(draws.iter().any(|d| d.flip) && draws.iter().any(|d| !d.flip));
    assert!(draws.iter().any(|d| d.vflip) && draws.iter().any(|d| d.x0 == 1));
    assert!((0..4).all(|k| draws.iter().any(|d| d.quarter_turns == k)));
    assert!(draws
        .iter()
        .all(|d| (0.8..=1.2).contains(&d.brightness) && (0.8..=1.2).contains(&d.contrast)));
    // no augmentation: training reads exactly the evaluation image
    let plain = Arc::new(
        Dataset::open(&DataConfig {
            augment: Some(Augment::NONE),
            ..cfg
        })
        .unwrap(),
    );
    let t = collect(
        &BatchLoader::train(plain.clone(), SamplerKind::Uniform, 6).unwrap(),
        0,
        0,
    );
    let first = plain.eval_image(Split::Train, t[0].samples[0]).unwrap();
    assert_eq!(&t[0].x[..first.len()], &first[..]);
}

#[test]
fn augment_lists_parse_and_print() {
    let a: Augment = " Flip , rot90,crop ".parse().unwrap();
    assert_eq!(a.to_string(), "crop,flip,rot90");
    assert_eq!("none".parse::<Augment>().unwrap(), Augment::NONE);
    assert_eq!(Augment::NONE.to_string(), "none");
    for (bad, word) in [("spin", "spin"), ("crop,hflip", "hflip"), ("", "''")] {
        let e = format!("{:#}", bad.parse::<Augment>().unwrap_err());
        assert!(e.contains(word), "{e}");
    }
    assert!("none,flip".parse::<Augment>().is_err());
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(json, "\"crop,flip,rot90\"");
    assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), a);
}

#[test]
fn defaults_follow_the_paper_and_old_configs_keep_their_pipeline() {
    let only_crop = Augment {
        crop: true,
        ..Augment::NONE
    };
    assert_eq!(default_augment(DatasetKind::BreaKHis), only_crop);
    for k in [
        DatasetKind::ChestXray,
        DatasetKind::ImageFolder,
        DatasetKind::Synthetic,
    ] {
        assert_eq!(default_augment(k), Augment::NONE, "{k}");
        assert_eq!(default_normalize(k), Normalize::Dataset, "{k}");
    }
    // a config saved before issue 17: crops where there was a margin, flips, ImageNet
    for (kind, want) in [
        ("imagefolder", "crop,flip"),
        ("breakhis", "crop,flip"),
        ("chestxray", "flip"),
        ("synthetic", "flip"),
    ] {
        let mut old = serde_json::json!({"kind": kind, "image_size": 8, "seed": 3});
        upgrade_saved_data_config(&mut old);
        let cfg: DataConfig = serde_json::from_value(old).unwrap();
        assert_eq!(cfg.augment.unwrap().to_string(), want, "{kind}");
        assert_eq!(cfg.normalize, Some(Normalize::Imagenet));
    }
    // and a new one is left as saved
    let mut new =
        serde_json::json!({"kind": "imagefolder", "augment": "none", "normalize": "none"});
    upgrade_saved_data_config(&mut new);
    assert_eq!(new["augment"], "none");
    // the old ImageFolder geometry: shorter side to S·256/224, centre window
    let root = folder("legacy", 10, 7);
    let mut old = serde_json::json!({"kind": "imagefolder", "image_size": 8});
    upgrade_saved_data_config(&mut old);
    let cfg = DataConfig {
        root: Some(root.clone()),
        ..serde_json::from_value(old).unwrap()
    };
    let ds = Dataset::open(&cfg).unwrap();
    let px = ds.preprocessor().base(&ds.train[0].source).unwrap();
    assert_eq!((px.w, px.h), (13, 9));
    let want: Vec<f32> = flat(&window(&px, 2, 0, 8))
        .iter()
        .enumerate()
        .map(|(i, v)| (v - IMAGENET_MEAN[i / 64]) * (1.0 / IMAGENET_STD[i / 64]))
        .collect();
    assert_eq!(ds.eval_image(Split::Train, 0).unwrap(), want);
    std::fs::remove_dir_all(root).unwrap();
}
