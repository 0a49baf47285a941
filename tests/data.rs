//! Data pipeline tests: layouts, long tail, samplers, determinism, bad images, synthetic set.

use lskbb::data::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("lskbb-data-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_rgb(path: &Path, w: u32, h: u32, tag: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8 ^ tag, (y * 5) as u8, tag.wrapping_mul(3)])
    })
    .save(path)
    .unwrap();
}

fn write_gray(path: &Path, w: u32, h: u32, tag: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x + y) as u8 ^ tag]))
        .save(path)
        .unwrap();
}

fn small(cfg: DataConfig) -> DataConfig {
    DataConfig {
        image_size: 16,
        workers: Some(3),
        ..cfg
    }
}

/// BreaKHis mini copy: per class 2 patients × magnifications {40, 100} × 3 images = 12.
fn make_breakhis(root: &Path) {
    let breast = root.join("BreaKHis_v1/histology_slides/breast");
    for (k, (code, name)) in BREAKHIS_CLASSES.iter().enumerate() {
        let group = if k < 4 { "benign" } else { "malignant" };
        let bm = if k < 4 { "B" } else { "M" };
        for p in 0..2 {
            let slide = format!("{}{}", 1000 + k, ["A", "B"][p]);
            for mag in [40, 100] {
                for seq in 1..=3 {
                    let file = breast.join(format!(
                        "{group}/SOB/{name}/SOB_{bm}_{code}-14-{slide}/{mag}X/SOB_{bm}_{code}-14-{slide}-{mag}-{seq:03}.png"
                    ));
                    write_rgb(&file, 28, 18, (k * 16 + seq) as u8);
                }
            }
        }
    }
    // a stray file that is not a BreaKHis image name
    write_rgb(&breast.join("benign/notes.png"), 4, 4, 0);
}

#[test]
fn breakhis_name_parsing() {
    let p = parse_breakhis_name("SOB_M_DC-14-2523-400-001.png").unwrap();
    assert_eq!(p.class, 4);
    assert_eq!(p.patient, "14-2523");
    assert_eq!(p.magnification, 400);
    let p = parse_breakhis_name("SOB_B_TA-14-13200-40-012.png").unwrap();
    assert_eq!((p.class, p.magnification), (3, 40));
    assert_eq!(parse_breakhis_name("SOB_B_DC-14-2523-400-001.png"), None);
    assert_eq!(parse_breakhis_name("SOB_M_DC-14-2523-300-001.png"), None);
    assert_eq!(parse_breakhis_name("notes.png"), None);
}

#[test]
fn breakhis_layout_classes_patients_magnifications() {
    let root = temp_dir("breakhis");
    make_breakhis(&root);
    let base = small(DataConfig {
        root: Some(root.clone()),
        test_per_class: 2,
        val_per_class: 1,
        ..DataConfig::default()
    });
    for r in [
        root.clone(),
        root.join("BreaKHis_v1"),
        root.join("BreaKHis_v1/histology_slides/breast"),
    ] {
        let ds = Dataset::open(&DataConfig {
            root: Some(r),
            ..base.clone()
        })
        .unwrap();
        assert_eq!(ds.kind, DatasetKind::BreaKHis);
        let names: Vec<&str> = BREAKHIS_CLASSES.iter().map(|(_, n)| *n).collect();
        assert_eq!(ds.classes, names);
        assert_eq!(ds.counts(Split::Test), vec![2; 8]);
        assert_eq!(ds.counts(Split::Val), vec![1; 8]);
        assert_eq!(ds.train_counts(), vec![9; 8]);
        assert_eq!(ds.notes.len(), 1, "{:?}", ds.notes);
        let patients: BTreeSet<String> = ds
            .train
            .iter()
            .chain(&ds.test)
            .chain(&ds.val)
            .map(|s| s.patient.clone().unwrap())
            .collect();
        assert_eq!(patients.len(), 16);
        assert!(patients.contains("14-1004A"));
    }
    let ds = Dataset::open(&DataConfig {
        magnification: Some(40),
        ..base.clone()
    })
    .unwrap();
    assert!(ds
        .train
        .iter()
        .chain(&ds.test)
        .all(|s| s.magnification == Some(40)));
    assert_eq!(ds.train_counts(), vec![3; 8]);

    // patient split: whole patients, test trimmed to the quota, one patient left for train
    let ds = Dataset::open(&DataConfig {
        split_by_patient: true,
        test_per_class: 4,
        val_per_class: 0,
        ..base.clone()
    })
    .unwrap();
    let pats = |set: &[Sample]| -> BTreeSet<String> {
        set.iter().map(|s| s.patient.clone().unwrap()).collect()
    };
    assert!(pats(&ds.train).is_disjoint(&pats(&ds.test)));
    assert_eq!(ds.counts(Split::Test), vec![4; 8]);
    assert_eq!(ds.train_counts(), vec![6; 8]);
    assert!(ds.notes.iter().any(|n| n.contains("patient split")));

    let err = Dataset::open(&DataConfig {
        test_per_class: 12,
        ..base
    })
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("too few"), "{err:#}");
    std::fs::remove_dir_all(root).unwrap();
}

fn make_chest(dir: &Path, per: usize) {
    for split in ["train", "test", "val"] {
        for (c, class) in ["NORMAL", "PNEUMONIA"].iter().enumerate() {
            let n = if split == "train" { per * (c + 1) } else { 2 };
            for i in 0..n {
                write_gray(
                    &dir.join(format!("{split}/{class}/img{i}.jpeg")),
                    40 + i as u32,
                    32,
                    i as u8,
                );
            }
        }
    }
}

#[test]
fn chestxray_nested_duplicate_and_macosx() {
    let root = temp_dir("chest");
    make_chest(&root.join("chest_xray"), 3);
    make_chest(&root.join("chest_xray/chest_xray"), 3);
    std::fs::create_dir_all(root.join("__MACOSX/chest_xray/train/NORMAL")).unwrap();
    std::fs::write(
        root.join("__MACOSX/chest_xray/train/NORMAL/._img0.jpeg"),
        b"x",
    )
    .unwrap();
    std::fs::write(root.join("chest_xray/train/NORMAL/._img0.jpeg"), b"x").unwrap();
    for r in [root.clone(), root.join("chest_xray")] {
        let ds = Dataset::open(&small(DataConfig {
            root: Some(r),
            normalize: Some(Normalize::Imagenet),
            ..DataConfig::default()
        }))
        .unwrap();
        assert_eq!(ds.kind, DatasetKind::ChestXray);
        assert_eq!(ds.classes, vec!["normal", "pneumonia"]);
        assert_eq!(ds.train_counts(), vec![3, 6]);
        assert_eq!(ds.counts(Split::Test), vec![2, 2]);
        assert_eq!(ds.counts(Split::Val), vec![2, 2]);
        assert!(ds
            .train
            .iter()
            .all(|s| !s.source.describe().contains("chest_xray/chest_xray")));
        let x = ds.eval_image(Split::Test, 0).unwrap();
        assert_eq!(x.len(), 3 * 16 * 16);
        // grey input replicated over the 3 channels before per-channel normalisation
        let plane = 16 * 16;
        let g0 = x[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0];
        let g1 = x[plane] * IMAGENET_STD[1] + IMAGENET_MEAN[1];
        assert!((g0 - g1).abs() < 1e-5);
    }
    // only the nested copy is complete
    let root2 = temp_dir("chest-nested");
    std::fs::create_dir_all(root2.join("chest_xray/train/NORMAL")).unwrap();
    make_chest(&root2.join("chest_xray/chest_xray"), 2);
    let ds = Dataset::open(&small(DataConfig {
        root: Some(root2.clone()),
        ..DataConfig::default()
    }))
    .unwrap();
    assert_eq!(ds.train_counts(), vec![2, 4]);
    std::fs::remove_dir_all(root).unwrap();
    std::fs::remove_dir_all(root2).unwrap();
}

#[test]
fn imagefolder_sorted_classes_and_extensions() {
    let root = temp_dir("folder");
    for (class, n) in [("zebra", 3), ("ant", 5), ("moth", 2)] {
        for i in 0..n {
            let ext = ["png", "PNG", "jpg", "JPEG", "bmp"][i % 5];
            write_rgb(
                &root.join(format!("train/{class}/{i}.{ext}")),
                20,
                30,
                i as u8,
            );
        }
        write_rgb(&root.join(format!("test/{class}/t.png")), 30, 20, 1);
        write_rgb(&root.join(format!("test/{class}/u.tif")), 30, 20, 2);
        std::fs::write(root.join(format!("train/{class}/readme.txt")), b"no").unwrap();
    }
    let ds = Dataset::open(&small(DataConfig {
        root: Some(root.clone()),
        ..DataConfig::default()
    }))
    .unwrap();
    assert_eq!(ds.kind, DatasetKind::ImageFolder);
    assert_eq!(ds.classes, vec!["ant", "moth", "zebra"]);
    assert_eq!(ds.train_counts(), vec![5, 2, 3]);
    assert_eq!(ds.counts(Split::Test), vec![2, 2, 2]);
    assert!(ds.val.is_empty());

    let one = preprocess_file(
        &root.join("test/ant/t.png"),
        &DataConfig {
            kind: DatasetKind::ImageFolder,
            image_size: 16,
            channels: 1,
            normalize: Some(Normalize::Imagenet),
            ..DataConfig::default()
        },
    )
    .unwrap();
    assert_eq!(one.len(), 16 * 16);
    let via_ds = ds.preprocess_file(&root.join("test/ant/t.png")).unwrap();
    assert_eq!(via_ds, ds.eval_image(Split::Test, 0).unwrap());

    // an empty class folder is an error naming it with the counts
    std::fs::create_dir_all(root.join("train/newt")).unwrap();
    let err = Dataset::open(&small(DataConfig {
        root: Some(root.clone()),
        ..DataConfig::default()
    }))
    .err()
    .unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("newt") && msg.contains("ant=5"), "{msg}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn wrong_layout_shows_expected_layouts() {
    let root = temp_dir("wrong");
    std::fs::create_dir_all(root.join("images")).unwrap();
    let err = Dataset::open(&DataConfig {
        root: Some(root.clone()),
        ..DataConfig::default()
    })
    .err()
    .unwrap();
    let msg = format!("{err:#}");
    for kind in [
        "breakhis:",
        "chestxray:",
        "imagefolder:",
        "SOB_<B|M>",
        "NORMAL",
    ] {
        assert!(msg.contains(kind), "{msg}");
    }
    let err = Dataset::open(&DataConfig {
        kind: DatasetKind::BreaKHis,
        root: Some(root.clone()),
        ..DataConfig::default()
    })
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("histology_slides"));
    assert_eq!(
        "chest_xray".parse::<DatasetKind>().unwrap(),
        DatasetKind::ChestXray
    );
    assert_eq!(parse_magnification("100X").unwrap(), Some(100));
    assert_eq!(parse_magnification("all").unwrap(), None);
    assert!(parse_magnification("300").is_err());
    assert_eq!(parse_imbalance("none").unwrap(), None);
    assert_eq!(parse_imbalance("50").unwrap(), Some(50.0));
    assert!(parse_imbalance("0.5").is_err());
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn long_tail_counts_follow_formula() {
    // classes deliberately not in size order
    let counts = [700, 1000, 900, 650, 800, 1000, 750];
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    for factor in [10.0f64, 50.0, 100.0] {
        let base = [1000; 7];
        let t = long_tail_counts(&base, factor).unwrap();
        assert_eq!(t[0], 1000);
        assert_eq!(t[6], (1000.0 / factor).round() as usize);
        for (i, &n) in t.iter().enumerate() {
            let want = (1000.0 * (1.0 / factor).powf(i as f64 / 6.0)).floor() as usize;
            assert!(
                n == want || n == want + 1,
                "IF {factor} class {i}: {n} vs {want}"
            );
        }
        let ranked = long_tail_counts(&counts.map(|c| c * 10), factor);
        if factor >= 50.0 {
            let t = ranked.unwrap();
            for (i, &class) in order.iter().enumerate() {
                let want = (10000.0 * (1.0 / factor).powf(i as f64 / 6.0)).floor() as usize;
                assert!(t[class].abs_diff(want) <= 1);
            }
        }
    }
    let err = long_tail_counts(&[100, 30, 5], 10.0).err().unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("class 1 (rank 1) has 30 images but needs 31"),
        "{msg}"
    );
    assert!(
        msg.contains("class 2 (rank 2) has 5 images but needs 10"),
        "{msg}"
    );
    assert_eq!(
        long_tail_counts(&[5000, 5000], 100.0).unwrap(),
        vec![5000, 50]
    );
    assert!(long_tail_counts(&[7, 3], 1.0).is_err());
    assert!(long_tail_counts(&[7, 7], 0.5).is_err());
}

#[test]
fn capped_long_tail_reaches_the_factor_on_breakhis_counts() {
    // BreaKHis training counts after 80 test + 80 validation images per class
    let counts = [284, 854, 293, 409, 3291, 466, 632, 400];
    for factor in [10.0, 50.0, 100.0] {
        assert!(long_tail_counts(&counts, factor).is_err());
        let t = long_tail_counts_capped(&counts, factor).unwrap();
        let mut order: Vec<usize> = (0..8).collect();
        order.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
        for (i, &class) in order.iter().enumerate() {
            let want = (3291.0 * (1.0 / factor).powf(i as f64 / 7.0)).floor() as usize;
            assert!(t[class].abs_diff(want.min(counts[class])) <= 1);
        }
        assert_eq!(t[4], 3291);
        let ratio = 3291.0 / *t.iter().min().unwrap() as f64;
        assert!(
            ratio >= factor && ratio < factor * 1.2,
            "IF {factor}: {t:?}"
        );
    }
}

#[test]
fn long_tail_applied_to_training_set_only() {
    for factor in [10.0, 50.0, 100.0] {
        let ds = Dataset::open(&small(DataConfig {
            imbalance: Some(factor),
            synthetic_train_per_class: 200,
            synthetic_classes: 5,
            test_per_class: 7,
            ..DataConfig::default()
        }))
        .unwrap();
        assert_eq!(ds.original_train_counts, vec![200; 5]);
        assert_eq!(
            ds.train_counts(),
            long_tail_counts(&[200; 5], factor).unwrap()
        );
        assert_eq!(ds.counts(Split::Test), vec![7; 5]);
        assert!(ds.notes.iter().any(|n| n.contains("long tail")));
    }
    let capped = Dataset::open(&small(DataConfig {
        imbalance: Some(4.0),
        long_tail_cap: true,
        synthetic_train_per_class: 40,
        ..DataConfig::default()
    }))
    .unwrap();
    assert_eq!(
        capped.train_counts(),
        long_tail_counts_capped(&[40; 4], 4.0).unwrap()
    );
    // seeded choice of kept images
    let pick = |seed| {
        let ds = Dataset::open(&small(DataConfig {
            seed,
            ..DataConfig::default()
        }))
        .unwrap();
        ds.train
            .iter()
            .map(|s| s.source.describe())
            .collect::<Vec<_>>()
    };
    assert_eq!(pick(1), pick(1));
    assert_ne!(pick(1), pick(2));
}

#[test]
fn reversed_sampler_follows_inverse_frequency() {
    let sizes = [200usize, 50, 20, 10];
    let labels: Vec<usize> = sizes
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
        .collect();
    let sampler = Sampler::new(SamplerKind::Reversed, &labels, 4, 7).unwrap();
    let w: Vec<f64> = sizes.iter().map(|&n| 200.0 / n as f64).collect();
    let total: f64 = w.iter().sum();
    let p: Vec<f64> = w.iter().map(|x| x / total).collect();
    for (a, b) in sampler.class_probabilities().iter().zip(&p) {
        assert!((a - b).abs() < 1e-12);
    }
    let mut observed = [0usize; 4];
    let mut per_image = BTreeMap::new();
    let epochs = 40;
    for e in 0..epochs {
        let idx = sampler.epoch_indices(e);
        assert_eq!(idx.len(), labels.len());
        for i in idx {
            observed[labels[i]] += 1;
            *per_image.entry(i).or_insert(0usize) += 1;
        }
    }
    let n = (epochs as usize * labels.len()) as f64;
    let chi2 = |probs: &[f64]| -> f64 {
        observed
            .iter()
            .zip(probs)
            .map(|(&o, &q)| (o as f64 - n * q).powi(2) / (n * q))
            .sum()
    };
    // df = 3: P(chi2 > 21.1) ≈ 1e-4, so a correct sampler passes with a fixed seed; a
    // sampler proportional to class size (or uniform over classes) gives chi2 in the thousands.
    assert!(chi2(&p) < 21.1, "chi2 {} observed {observed:?}", chi2(&p));
    let prop: Vec<f64> = sizes.iter().map(|&s| s as f64 / 280.0).collect();
    assert!(chi2(&prop) > 1000.0);
    assert!(chi2(&[0.25; 4]) > 100.0);
    // within a class images are drawn uniformly: every image of the smallest class appears
    assert!((270..280).all(|i| per_image.get(&i).copied().unwrap_or(0) > 0));

    let balanced = Sampler::new(SamplerKind::ClassBalanced, &labels, 4, 7).unwrap();
    let mut counts = [0usize; 4];
    for e in 0..epochs {
        for i in balanced.epoch_indices(e) {
            counts[labels[i]] += 1;
        }
    }
    let chi2b: f64 = counts
        .iter()
        .map(|&o| (o as f64 - n / 4.0).powi(2) / (n / 4.0))
        .sum();
    assert!(chi2b < 21.1, "{counts:?}");

    let uniform = Sampler::new(SamplerKind::Uniform, &labels, 4, 7).unwrap();
    let mut perm = uniform.epoch_indices(3);
    assert_ne!(perm, uniform.epoch_indices(4));
    assert_eq!(perm, uniform.epoch_indices(3));
    perm.sort();
    assert_eq!(perm, (0..labels.len()).collect::<Vec<_>>());
}

#[test]
fn batch_bounds_merge_a_single_image_tail() {
    let lens = |n, b, m| -> Vec<usize> { batch_bounds(n, b, m).iter().map(|r| r.len()).collect() };
    assert_eq!(lens(10, 4, true), vec![4, 4, 2]);
    assert_eq!(lens(9, 4, true), vec![4, 5]);
    assert_eq!(lens(9, 4, false), vec![4, 4, 1]);
    assert_eq!(lens(1, 4, true), vec![1]);
    assert_eq!(lens(8, 4, true), vec![4, 4]);
}

fn collect(loader: &BatchLoader, epoch: u64, start: usize) -> Vec<Batch> {
    loader
        .epoch(epoch, start)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn batches_are_deterministic_and_resumable() {
    let cfg = small(DataConfig {
        seed: 11,
        test_per_class: 5,
        ..DataConfig::default()
    });
    let ds = Arc::new(Dataset::open(&cfg).unwrap());
    let n = ds.train.len();
    let uniform = BatchLoader::train(ds.clone(), SamplerKind::Uniform, 10).unwrap();
    let reversed = BatchLoader::train(ds.clone(), SamplerKind::Reversed, 10).unwrap();
    assert_eq!(uniform.num_batches(), reversed.num_batches());
    let a = collect(&uniform, 2, 0);
    assert_eq!(a.len(), uniform.num_batches());
    assert_eq!(a.iter().map(|b| b.y.len()).sum::<usize>(), n);
    assert!(a
        .iter()
        .all(|b| b.shape == [b.y.len(), 3, 16, 16] && b.y.len() >= 2));
    assert_eq!(a, collect(&uniform, 2, 0));
    assert_ne!(a, collect(&uniform, 3, 0));
    // resume at batch 5 reproduces batches 5..
    assert_eq!(collect(&uniform, 2, 5), a[5..].to_vec());
    // a different worker count gives the same batches
    let ds1 = Arc::new(
        Dataset::open(&DataConfig {
            workers: Some(1),
            prefetch_batches: 1,
            ..cfg.clone()
        })
        .unwrap(),
    );
    let one = BatchLoader::train(ds1.clone(), SamplerKind::Uniform, 10).unwrap();
    assert_eq!(collect(&one, 2, 0), a);
    let r = collect(&reversed, 2, 0);
    assert_eq!(r.len(), a.len());
    assert_eq!(collect(&reversed, 2, 4), r[4..].to_vec());
    // stopping early (dropping the iterator) is fine
    let mut it = uniform.epoch(0, 0).unwrap();
    it.next().unwrap().unwrap();
    drop(it);

    // evaluation: every image once, in order, unaugmented and identical each epoch
    let eval = BatchLoader::eval(ds.clone(), Split::Test, 7).unwrap();
    let e0 = collect(&eval, 0, 0);
    assert_eq!(e0, collect(&eval, 9, 0));
    let all: Vec<usize> = e0.iter().flat_map(|b| b.samples.clone()).collect();
    assert_eq!(all, (0..ds.test.len()).collect::<Vec<_>>());
    let first = ds.eval_image(Split::Test, 0).unwrap();
    assert_eq!(&e0[0].x[..first.len()], &first[..]);
    assert!(uniform.epoch(0, uniform.num_batches() + 1).is_err());
}

#[test]
fn corrupt_image_errors_or_is_skipped() {
    let root = temp_dir("corrupt");
    for class in ["a", "b"] {
        for i in 0..4 {
            write_rgb(&root.join(format!("train/{class}/{i}.png")), 20, 20, i);
        }
        write_rgb(&root.join(format!("test/{class}/ok.png")), 20, 20, 9);
    }
    std::fs::write(root.join("test/b/broken.png"), b"not a png at all").unwrap();
    let cfg = small(DataConfig {
        root: Some(root.clone()),
        ..DataConfig::default()
    });
    let ds = Arc::new(Dataset::open(&cfg).unwrap());
    let eval = BatchLoader::eval(ds.clone(), Split::Test, 2).unwrap();
    let results: Vec<_> = eval.epoch(0, 0).unwrap().collect();
    let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(format!("{err:#}").contains("broken.png"), "{err:#}");

    let ds = Arc::new(
        Dataset::open(&DataConfig {
            skip_bad_images: true,
            ..cfg
        })
        .unwrap(),
    );
    let eval = BatchLoader::eval(ds.clone(), Split::Test, 2).unwrap();
    let batches = collect(&eval, 0, 0);
    assert_eq!(batches.iter().map(|b| b.y.len()).sum::<usize>(), 2);
    collect(&eval, 1, 0);
    let skipped = ds.skipped_images();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].0.ends_with("broken.png"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn synthetic_set_is_deterministic_and_class_dependent() {
    let size = 24;
    assert_eq!(
        synthetic_image(3, 1, 5, 4, size),
        synthetic_image(3, 1, 5, 4, size)
    );
    assert_ne!(
        synthetic_image(3, 1, 5, 4, size),
        synthetic_image(4, 1, 5, 4, size)
    );
    // nearest class centroid on raw pixels separates held-out images
    let img = |c: usize, i: u64| -> Vec<f64> {
        synthetic_image(3, c, i, 4, size)
            .data
            .iter()
            .map(|&v| v as f64)
            .collect()
    };
    let centroids: Vec<Vec<f64>> = (0..4)
        .map(|c| {
            let mut m = vec![0.0; size * size * 3];
            for i in 0..30 {
                for (a, b) in m.iter_mut().zip(img(c, i)) {
                    *a += b / 30.0;
                }
            }
            m
        })
        .collect();
    let mut correct = 0;
    for c in 0..4 {
        for i in 100..120 {
            let x = img(c, i);
            let best = (0..4)
                .min_by(|&a, &b| {
                    let d = |k: usize| -> f64 {
                        x.iter()
                            .zip(&centroids[k])
                            .map(|(p, q)| (p - q).powi(2))
                            .sum()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            correct += usize::from(best == c);
        }
    }
    assert!(correct >= 72, "nearest-centroid accuracy {correct}/80");

    let ds = Dataset::open(&small(DataConfig::default())).unwrap();
    assert_eq!(ds.kind, DatasetKind::Synthetic);
    assert_eq!(ds.classes.len(), 4);
    assert_eq!(ds.imbalance, Some(10.0));
    assert_eq!(ds.train_counts(), vec![120, 55, 25, 12]);
    assert_eq!(ds.counts(Split::Test), vec![80; 4]);
}

#[test]
fn preprocessing_sizes_channels_and_split_json() {
    let root = temp_dir("pre");
    make_breakhis(&root);
    let cfg = DataConfig {
        root: Some(root.clone()),
        image_size: 32,
        test_per_class: 2,
        workers: Some(2),
        ..DataConfig::default()
    };
    let ds = Arc::new(Dataset::open(&cfg).unwrap());
    assert_eq!(ds.image_shape(), [3, 32, 32]);
    // BreaKHis at size 32: 50×33 pre-crop, so training crops vary while eval is fixed
    let px = ds.preprocessor().base(&ds.train[0].source).unwrap();
    assert_eq!((px.w, px.h, px.c), (50, 33, 3));
    let train = BatchLoader::train(ds.clone(), SamplerKind::Uniform, 8).unwrap();
    let b = collect(&train, 0, 0);
    assert_eq!(b[0].x.len(), b[0].y.len() * 3 * 32 * 32);
    assert!(b[0].x.iter().all(|v| v.is_finite()));
    // the cache holds each decoded training image once
    assert_eq!(ds.preprocessor().cached(), ds.train.len());

    let gray = Dataset::open(&DataConfig {
        channels: 1,
        ..cfg.clone()
    })
    .unwrap();
    assert_eq!(gray.eval_image(Split::Test, 0).unwrap().len(), 32 * 32);

    let v = ds.split_json();
    assert_eq!(v["kind"], "breakhis");
    assert_eq!(v["classes"].as_array().unwrap().len(), 8);
    assert_eq!(v["counts"]["test"], serde_json::json!(vec![2; 8]));
    assert_eq!(v["train"].as_array().unwrap().len(), ds.train.len());
    assert!(v["test"][0]["patient"].is_string());
    let out = root.join("split.json");
    ds.write_split_json(&out).unwrap();
    let back: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(back, v);
    std::fs::remove_dir_all(root).unwrap();
}
