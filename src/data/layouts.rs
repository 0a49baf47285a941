//! Readers for the on-disk layouts: BreaKHis, ChestX-ray (Kermany) and a generic ImageFolder,
//! plus layout detection for `DatasetKind::Auto`.

use super::{DatasetKind, ImageSource, Sample};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// BreaKHis classes in label order (benign first, then malignant), with their file-name codes.
pub const BREAKHIS_CLASSES: [(&str, &str); 8] = [
    ("A", "adenosis"),
    ("F", "fibroadenoma"),
    ("PT", "phyllodes_tumor"),
    ("TA", "tubular_adenoma"),
    ("DC", "ductal_carcinoma"),
    ("LC", "lobular_carcinoma"),
    ("MC", "mucinous_carcinoma"),
    ("PC", "papillary_carcinoma"),
];

pub const CHEST_CLASSES: [&str; 2] = ["normal", "pneumonia"];

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// The layouts each kind expects, shown when a root does not match.
pub const EXPECTED_LAYOUTS: &str = "\
  breakhis:    <root>/BreaKHis_v1/histology_slides/breast/{benign,malignant}/SOB/<type>/<slide>/<mag>X/SOB_<B|M>_<A|F|PT|TA|DC|LC|MC|PC>-<yy>-<slide>-<mag>-<seq>.png
               (root may also be BreaKHis_v1 or histology_slides/breast)
  chestxray:   <root>/chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg, optional val/ (root may also be chest_xray)
  imagefolder: <root>/train/<class>/*.{png,jpg,jpeg,bmp,tif,tiff}, <root>/test/<class>/*, optional <root>/val/<class>/*
  synthetic:   no root (built-in generated long-tailed set)";

/// A parsed BreaKHis file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakhisName {
    pub class: usize,
    /// `<yy>-<slide>`, e.g. `14-22549AB`.
    pub patient: String,
    pub magnification: u32,
}

/// Parses `SOB_<B|M>_<code>-<yy>-<slide>-<mag>-<seq>.png`; None when the name does not match.
pub fn parse_breakhis_name(name: &str) -> Option<BreakhisName> {
    let stem = name
        .strip_suffix(".png")
        .or_else(|| name.strip_suffix(".PNG"))?;
    let mut parts = stem.splitn(3, '_');
    if parts.next()? != "SOB" {
        return None;
    }
    let group = parts.next()?;
    let mut fields = parts.next()?.split('-');
    let code = fields.next()?;
    let yy = fields.next()?;
    let slide = fields.next()?;
    let magnification: u32 = fields.next()?.parse().ok()?;
    let seq = fields.next()?;
    if fields.next().is_some()
        || yy.is_empty()
        || slide.is_empty()
        || seq.is_empty()
        || ![40, 100, 200, 400].contains(&magnification)
    {
        return None;
    }
    let class = BREAKHIS_CLASSES.iter().position(|(c, _)| *c == code)?;
    let expected_group = if class < 4 { "B" } else { "M" };
    if group != expected_group {
        return None;
    }
    Some(BreakhisName {
        class,
        patient: format!("{yy}-{slide}"),
        magnification,
    })
}

fn is_junk(name: &str) -> bool {
    name.starts_with('.') || name == "__MACOSX"
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Sorted sub-folders of `dir` (name, path), skipping hidden folders and `__MACOSX`.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_junk(&name) && entry.path().is_dir() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Sorted image files directly inside `dir` (hidden files and AppleDouble `._*` skipped).
fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !is_junk(&name) && path.is_file() && has_image_extension(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Every file below `dir`, recursively, in sorted order (junk folders skipped). A folder
/// reached twice (a symlink to itself or to an ancestor, or two links to one folder) is
/// walked once, so link loops end and no image is listed twice.
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut out, &mut HashSet::new())?;
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> Result<()> {
    let real =
        std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    if !seen.insert(real) {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_junk(&name) {
            entries.push(entry.path());
        }
    }
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out, seen)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Image files (by extension) among `files`.
pub fn image_files(files: Vec<PathBuf>) -> Vec<PathBuf> {
    files
        .into_iter()
        .filter(|p| has_image_extension(p))
        .collect()
}

/// The `breast` folder of a BreaKHis copy, accepting the three documented roots.
pub fn breakhis_dir(root: &Path) -> Option<PathBuf> {
    [
        root.join("BreaKHis_v1/histology_slides/breast"),
        root.join("histology_slides/breast"),
        root.to_path_buf(),
    ]
    .into_iter()
    .find(|d| d.join("benign").is_dir() || d.join("malignant").is_dir())
}

/// Reads every BreaKHis image (optionally one magnification). Returns the samples in sorted
/// path order and the number of `.png` files whose names did not parse (ignored).
pub fn load_breakhis(root: &Path, magnification: Option<u32>) -> Result<(Vec<Sample>, usize)> {
    let dir = breakhis_dir(root).with_context(|| {
        format!(
            "{} is not a BreaKHis folder; expected layouts:\n{EXPECTED_LAYOUTS}",
            root.display()
        )
    })?;
    let files = files_below(&dir)?;
    let mut samples = Vec::new();
    let mut ignored = 0;
    for path in files {
        if !has_image_extension(&path) {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref().and_then(parse_breakhis_name) {
            Some(p) => {
                if magnification.is_none_or(|m| m == p.magnification) {
                    samples.push(Sample {
                        source: ImageSource::File(path),
                        label: p.class,
                        patient: Some(p.patient),
                        magnification: Some(p.magnification),
                    });
                }
            }
            None => ignored += 1,
        }
    }
    if samples.is_empty() {
        bail!(
            "no BreaKHis images{} found under {} ({} unparseable image files); expected layouts:\n{EXPECTED_LAYOUTS}",
            magnification.map(|m| format!(" at {m}X")).unwrap_or_default(),
            dir.display(),
            ignored
        );
    }
    Ok((samples, ignored))
}

/// True when `dir/<split>/<class>` holds at least one image for each class and split given.
fn complete(dir: &Path, splits: &[&str], classes: &[&str]) -> bool {
    splits.iter().all(|s| {
        classes.iter().all(|c| {
            images_in(&dir.join(s).join(c))
                .map(|v| !v.is_empty())
                .unwrap_or(false)
        })
    })
}

/// The first complete ChestX-ray copy: `root`, `root/chest_xray`, then the nested duplicate
/// `root/chest_xray/chest_xray` of the public archive.
pub fn chest_dir(root: &Path) -> Option<PathBuf> {
    [
        root.to_path_buf(),
        root.join("chest_xray"),
        root.join("chest_xray/chest_xray"),
    ]
    .into_iter()
    .find(|d| complete(d, &["train", "test"], &["NORMAL", "PNEUMONIA"]))
}

/// Train, test and val samples of one folder-per-split layout with the given class folders.
type Splits = (Vec<Sample>, Vec<Sample>, Vec<Sample>);

fn read_split(dir: &Path, class_dirs: &[String]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for (label, class) in class_dirs.iter().enumerate() {
        let class_dir = dir.join(class);
        if !class_dir.is_dir() {
            continue;
        }
        for path in images_in(&class_dir)? {
            out.push(Sample {
                source: ImageSource::File(path),
                label,
                patient: None,
                magnification: None,
            });
        }
    }
    Ok(out)
}

pub fn load_chest(root: &Path) -> Result<Splits> {
    let dir = chest_dir(root).with_context(|| {
        format!(
            "{} is not a ChestX-ray folder (no train/ and test/ with NORMAL/ and PNEUMONIA/ images); expected layouts:\n{EXPECTED_LAYOUTS}",
            root.display()
        )
    })?;
    let class_dirs = ["NORMAL".to_string(), "PNEUMONIA".to_string()];
    Ok((
        read_split(&dir.join("train"), &class_dirs)?,
        read_split(&dir.join("test"), &class_dirs)?,
        read_split(&dir.join("val"), &class_dirs)?,
    ))
}

fn is_imagefolder(root: &Path) -> bool {
    root.join("train").is_dir() && root.join("test").is_dir()
}

/// Class names (sorted folder names of `train/`) and the splits of an ImageFolder root.
pub fn load_imagefolder(root: &Path) -> Result<(Vec<String>, Splits)> {
    if !is_imagefolder(root) {
        bail!(
            "{} is not an ImageFolder root (needs train/ and test/); expected layouts:\n{EXPECTED_LAYOUTS}",
            root.display()
        );
    }
    let classes: Vec<String> = subdirs(&root.join("train"))?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if classes.is_empty() {
        bail!("{}/train has no class folders", root.display());
    }
    for split in ["test", "val"] {
        let dir = root.join(split);
        if !dir.is_dir() {
            continue;
        }
        let names: Vec<String> = subdirs(&dir)?.into_iter().map(|(n, _)| n).collect();
        let unknown: Vec<&String> = names.iter().filter(|n| !classes.contains(n)).collect();
        if !unknown.is_empty() {
            bail!(
                "{}/{split} has class folders {unknown:?} that train/ lacks (train classes: {classes:?})",
                root.display()
            );
        }
    }
    let train = read_split(&root.join("train"), &classes)?;
    let test = read_split(&root.join("test"), &classes)?;
    let val = if root.join("val").is_dir() {
        read_split(&root.join("val"), &classes)?
    } else {
        Vec::new()
    };
    Ok((classes, (train, test, val)))
}

/// Picks the kind whose layout `root` has (BreaKHis, then ChestX-ray, then ImageFolder).
pub fn detect(root: &Path) -> Result<DatasetKind> {
    if !root.is_dir() {
        bail!("data root {} is not a folder", root.display());
    }
    if breakhis_dir(root).is_some() {
        Ok(DatasetKind::BreaKHis)
    } else if chest_dir(root).is_some() {
        Ok(DatasetKind::ChestXray)
    } else if is_imagefolder(root) {
        Ok(DatasetKind::ImageFolder)
    } else {
        bail!(
            "cannot tell which dataset {} holds; expected one of these layouts:\n{EXPECTED_LAYOUTS}",
            root.display()
        )
    }
}
