//! The presets of `lskbb train --method`: the paper's LSKBB and its baselines, each a backbone,
//! a loss and one or two branches (`super::choices`). Choices given explicitly override the
//! preset's; a run stores the resolved choices, and the preset's name where they are its own.

use super::choices::{Backbone, Branches, Choices, Loss, Reweight, Sampler};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// LSK-ResNet-32, bilateral branches, DFLCE (the paper's method).
    Lskbb,
    /// Plain ResNet-32, bilateral branches, CE (BBN).
    Bbn,
    /// Plain ResNet-32, one branch (uniform sampler), CE.
    Ce,
    /// Plain ResNet-32, one branch, softmax focal loss.
    Focal,
    /// Plain ResNet-32, one branch, class-balanced softmax CE.
    CbCe,
    /// LSK-ResNet-32, bilateral, DFLCE (= lskbb; the loss ablation's name).
    Dflce,
    /// LSK-ResNet-32, bilateral, DFLCSCE.
    Dflcsce,
    /// Plain ResNet-32, one branch, LDAM with deferred re-weighting (Cao et al. 2019).
    LdamDrw,
    /// Plain ResNet-32, one branch, MiSLAS (Zhong et al. 2021): mixup, then the classifier
    /// retrained with label-aware smoothing and shifted batch-norm statistics.
    Mislas,
}

/// Every preset, in the order a match is looked for (lskbb before its alias dflce).
pub const METHODS: [Method; 9] = [
    Method::Lskbb,
    Method::Bbn,
    Method::Ce,
    Method::Focal,
    Method::CbCe,
    Method::Dflce,
    Method::Dflcsce,
    Method::LdamDrw,
    Method::Mislas,
];

impl std::str::FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Method> {
        let lower = s.to_ascii_lowercase();
        match METHODS
            .iter()
            .find(|m| m.name() == lower || (lower == "cbce" && **m == Method::CbCe))
        {
            Some(&m) => Ok(m),
            None => {
                let names: Vec<&str> = METHODS.iter().map(|m| m.name()).collect();
                bail!("--method '{s}' is not one of {}", names.join(", "))
            }
        }
    }
}

impl Method {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Lskbb => "lskbb",
            Method::Bbn => "bbn",
            Method::Ce => "ce",
            Method::Focal => "focal",
            Method::CbCe => "cb-ce",
            Method::Dflce => "dflce",
            Method::Dflcsce => "dflcsce",
            Method::LdamDrw => "ldam-drw",
            Method::Mislas => "mislas",
        }
    }

    /// The backbone, loss, branches and re-weighting of the preset, with the branches'
    /// default sampler.
    pub fn choices(self) -> Choices {
        use Backbone::{LskResnet32, Resnet32};
        use Branches::{Bilateral, Single};
        let (backbone, loss, branches) = match self {
            Method::Lskbb | Method::Dflce => (LskResnet32, Loss::Dflce, Bilateral),
            Method::Bbn => (Resnet32, Loss::Ce, Bilateral),
            Method::Ce => (Resnet32, Loss::Ce, Single),
            Method::Focal => (Resnet32, Loss::Focal, Single),
            Method::CbCe => (Resnet32, Loss::CbCe, Single),
            Method::Dflcsce => (LskResnet32, Loss::Dflcsce, Bilateral),
            Method::LdamDrw => (Resnet32, Loss::Ldam, Single),
            Method::Mislas => (Resnet32, Loss::Mislas, Single),
        };
        Choices {
            backbone,
            loss,
            branches,
            sampler: Sampler::default_for(branches),
            reweight: match self {
                Method::LdamDrw => Reweight::Drw,
                _ => Reweight::None,
            },
        }
    }

    /// The preset whose choices are `c`: `preferred` where it is one, else the first that is.
    pub fn matching(c: &Choices, preferred: Method) -> Option<Method> {
        std::iter::once(preferred)
            .chain(METHODS)
            .find(|m| m.choices() == *c)
    }
}

/// The choices given explicitly on the command line (None: the preset's).
#[derive(Clone, Copy, Debug, Default)]
pub struct Given {
    pub backbone: Option<Backbone>,
    pub loss: Option<Loss>,
    pub branches: Option<Branches>,
    pub sampler: Option<Sampler>,
    pub reweight: Option<Reweight>,
}

/// What the `--method` preset and the choices given explicitly resolve to: the preset's
/// choices with each given one in its place; the sampler, where not given, is the default of
/// the resolved branches (uniform for one, reversed for two), whatever the preset's.
pub fn resolve(method: Method, given: Given) -> Choices {
    let p = method.choices();
    let branches = given.branches.unwrap_or(p.branches);
    Choices {
        backbone: given.backbone.unwrap_or(p.backbone),
        loss: given.loss.unwrap_or(p.loss),
        branches,
        sampler: given.sampler.unwrap_or(Sampler::default_for(branches)),
        reweight: given.reweight.unwrap_or(p.reweight),
    }
}

/// Brings the 'train' metadata of a checkpoint saved before the choices were separate (a
/// `method` alone) up to date: the method's choices beside it.
pub fn upgrade_saved_choices(train: &mut serde_json::Value) -> Result<()> {
    let Some(obj) = train.as_object_mut() else {
        return Ok(());
    };
    if obj.contains_key("backbone") {
        return Ok(());
    }
    let Some(m) = obj.get("method") else {
        bail!("neither the choices (backbone, loss, branches, sampler) nor a method");
    };
    let method: Method = serde_json::from_value(m.clone())?;
    let serde_json::Value::Object(choices) = serde_json::to_value(method.choices())? else {
        bail!("the choices of {method:?} are not a JSON object");
    };
    obj.extend(choices);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_expand_to_their_choices() {
        use Backbone::{LskResnet32, Resnet32};
        use Branches::{Bilateral, Single};
        use Reweight::{Drw, None};
        use Sampler::{Reversed, Uniform};
        for (m, backbone, loss, branches, sampler, reweight) in [
            (
                Method::Lskbb,
                LskResnet32,
                Loss::Dflce,
                Bilateral,
                Reversed,
                None,
            ),
            (Method::Bbn, Resnet32, Loss::Ce, Bilateral, Reversed, None),
            (Method::Ce, Resnet32, Loss::Ce, Single, Uniform, None),
            (Method::Focal, Resnet32, Loss::Focal, Single, Uniform, None),
            (Method::CbCe, Resnet32, Loss::CbCe, Single, Uniform, None),
            (
                Method::Dflce,
                LskResnet32,
                Loss::Dflce,
                Bilateral,
                Reversed,
                None,
            ),
            (
                Method::Dflcsce,
                LskResnet32,
                Loss::Dflcsce,
                Bilateral,
                Reversed,
                None,
            ),
            (Method::LdamDrw, Resnet32, Loss::Ldam, Single, Uniform, Drw),
            (
                Method::Mislas,
                Resnet32,
                Loss::Mislas,
                Single,
                Uniform,
                None,
            ),
        ] {
            let want = Choices {
                backbone,
                loss,
                branches,
                sampler,
                reweight,
            };
            assert_eq!(m.choices(), want, "{m:?}");
            assert_eq!(resolve(m, Given::default()), want, "{m:?}");
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
            assert_eq!(Method::matching(&want, m), Some(m));
        }
    }

    #[test]
    fn given_choices_override_the_preset() {
        // The LSK backbone with CE on one branch: Table 5's LSK+CE row.
        let c = resolve(
            Method::Lskbb,
            Given {
                loss: Some(Loss::Ce),
                branches: Some(Branches::Single),
                ..Given::default()
            },
        );
        assert_eq!(
            c,
            Choices {
                backbone: Backbone::LskResnet32,
                loss: Loss::Ce,
                branches: Branches::Single,
                // The single branch's default, not the preset's reversed sampler.
                sampler: Sampler::Uniform,
                reweight: Reweight::None,
            }
        );
        assert_eq!(Method::matching(&c, Method::Lskbb), None);
        assert_eq!(c.describe(), "lsk-resnet32+ce+single");
        // lskbb with the plain backbone and CE is BBN.
        let bbn = resolve(
            Method::Lskbb,
            Given {
                backbone: Some(Backbone::Resnet32),
                loss: Some(Loss::Ce),
                ..Given::default()
            },
        );
        assert_eq!(Method::matching(&bbn, Method::Lskbb), Some(Method::Bbn));
        // dflce is lskbb's alias: named as given.
        let d = Method::Dflce.choices();
        assert_eq!(Method::matching(&d, Method::Dflce), Some(Method::Dflce));
        assert_eq!(Method::matching(&d, Method::Ce), Some(Method::Lskbb));
        let cb = resolve(
            Method::Ce,
            Given {
                sampler: Some(Sampler::ClassBalanced),
                ..Given::default()
            },
        );
        assert_eq!(cb.describe(), "resnet32+ce+single+class-balanced");
        assert_eq!(Method::matching(&cb, Method::Ce), None);
        // CE-DRW, a row of Cao et al.'s: ldam-drw with CE.
        let ce_drw = resolve(
            Method::LdamDrw,
            Given {
                loss: Some(Loss::Ce),
                ..Given::default()
            },
        );
        assert_eq!(ce_drw.describe(), "resnet32+ce+single+drw");
        // ... and without its re-weighting, plain LDAM.
        let ldam = resolve(
            Method::LdamDrw,
            Given {
                reweight: Some(Reweight::None),
                ..Given::default()
            },
        );
        assert_eq!(ldam.describe(), "resnet32+ldam+single");
    }

    #[test]
    fn names_parse_back_and_bad_ones_name_the_flag() {
        for b in ["resnet32", "LSK-ResNet32", "biformer-resnet32"] {
            assert_eq!(b.parse::<Backbone>().unwrap().name(), b.to_lowercase());
        }
        for l in ["ce", "focal", "cb-ce", "dflce", "dflcsce", "ldam", "mislas"] {
            assert_eq!(l.parse::<Loss>().unwrap().name(), l);
        }
        for (bad, flag) in [
            ("densenet121".parse::<Backbone>().err(), "--backbone"),
            ("ldam-drw".parse::<Loss>().err(), "--loss"),
            ("rw".parse::<Reweight>().err(), "--reweight"),
            ("double".parse::<Branches>().err(), "--branches"),
            ("square-root".parse::<Sampler>().err(), "--sampler"),
            ("misla".parse::<Method>().err(), "--method"),
        ] {
            let e = bad.expect("refused").to_string();
            assert!(e.starts_with(flag), "{e}");
        }
    }

    #[test]
    fn a_method_only_config_gets_its_choices() {
        let mut v = serde_json::json!({"method": "Bbn", "epochs": 3});
        upgrade_saved_choices(&mut v).unwrap();
        assert_eq!(v["backbone"], "resnet32");
        assert_eq!(v["loss"], "ce");
        assert_eq!(v["branches"], "bilateral");
        assert_eq!(v["sampler"], "reversed");
        assert_eq!(v["reweight"], "none");
        assert_eq!(v["method"], "Bbn");
        // Saved choices are kept as they are.
        let mut w = serde_json::json!({"method": null, "backbone": "lsk-resnet32"});
        upgrade_saved_choices(&mut w).unwrap();
        assert_eq!(
            w,
            serde_json::json!({"method": null, "backbone": "lsk-resnet32"})
        );
        let mut neither = serde_json::json!({"epochs": 3});
        assert!(upgrade_saved_choices(&mut neither).is_err());
    }
}
