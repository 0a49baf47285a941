//! Dense 3×3 convolutions at stride 2 with a map's row per subgroup
//! (`shaders/conv_rows_s2.wgsl`), forward, grad_x and grad_w, for lavapipe: on maps 16 or 32
//! columns wide (the ResNet-32s' two stride-2 layers at 32×32) a lane holds 2 or 4 adjacent
//! columns of x as one vector and the 1 or 2 output columns they centre, so a row of x or of
//! gy is one load (lavapipe loads a storage buffer lane by lane, a vec4 for about the price
//! of an f32) and a lane's taps are its own columns and one neighbour's. They replace
//! `subgroup`'s and `subgroup_w`'s stride-2 kernels, which load a row of 8 columns in two
//! loads, and grad_x as the stride-1 correlation of gy spread onto x's grid (a quarter of
//! its products by zero): in the plain 32×32 batch-16 step's profile (lavapipe, side by
//! side, two pairs) the two layers' forward 20.5, 15.7 → 10.9, 8.9 ms (k16p4; k16p2 12.1,
//! 13.7), grad_w 26.3, 22.5 → 13.0, 13.9 ms (ko16ci4; ko8ci8 about the same), and grad_x
//! about 20 ms (spread and Winograd) → 11.1, 7.7 ms ([`grad_x_variant`]; with 4 rows of gx
//! on 16-wide maps 14.9, 13.3).

use super::subgroup_rows::{comp, lane_type};
use super::{check_gy, subgroup, u, Conv2dParams, Geometry};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("../../../shaders/conv_rows_s2.wgsl");

/// `forward`'s blocks: `k` output channels (a multiple of 8) × `p` output rows per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2Variant {
    pub k: usize,
    pub p: usize,
}

impl std::fmt::Display for S2Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rows-s2 k{}p{}", self.k, self.p)
    }
}

/// `grad_w`'s blocks: `ko` output × `ci` input channels per workgroup, and `target`
/// workgroups in all (more chunks of images when the blocks are fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2WVariant {
    pub ko: usize,
    pub ci: usize,
    pub target: usize,
}

impl std::fmt::Display for S2WVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rows-s2-w ko{}ci{}", self.ko, self.ci)
    }
}

/// The forward variants `choice` runs (compact passes, others), which the tests cover.
pub const S2_VARIANTS: &[S2Variant] = &[S2Variant { k: 8, p: 4 }, S2Variant { k: 16, p: 4 }];

/// The grad_w variants `choice` runs (compact passes, others; `target` 8: four workgroups per
/// thread on 2 cores).
pub const S2_W_VARIANTS: &[S2WVariant] = &[
    S2WVariant {
        ko: 4,
        ci: 4,
        target: 8,
    },
    S2WVariant {
        ko: 16,
        ci: 4,
        target: 8,
    },
];

/// The grad_x variants `choice` runs ([`grad_x_variant`]: `p` rows of gy, 2·p of gx, per
/// workgroup).
pub const S2_X_VARIANTS: &[S2Variant] = &[S2Variant { k: 8, p: 2 }, S2Variant { k: 8, p: 4 }];

/// grad_x's default block on a map `w` wide: 8 input channels × as many rows of gx as keep
/// 128 sums per lane (two columns per lane: 8 rows, four: 4).
pub fn grad_x_variant(w: usize) -> S2Variant {
    S2Variant {
        k: 8,
        p: if columns(w) == 2 { 4 } else { 2 },
    }
}

/// The convolution's geometry, or why these kernels do not run it.
fn geometry(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    let g = super::geometry(x, w, p)?;
    if p.groups != 1
        || (g.kh, g.kw) != (3, 3)
        || p.padding != 1
        || p.dilation != 1
        || p.stride != 2
        || ![16, 32].contains(&g.w)
    {
        bail!(
            "conv_rows_s2: only dense 3x3 convolutions with padding 1, dilation 1 and stride \
             2 on maps 16 or 32 wide, got a {}x{} kernel on {} columns, {p:?}",
            g.kh,
            g.kw,
            g.w
        );
    }
    Ok(g)
}

/// Whether these kernels run this convolution on this device.
pub fn applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup::supported(x.gpu()) && geometry(x, w, p).is_ok()
}

/// x's columns per lane on a map `w` wide.
fn columns(w: usize) -> usize {
    w / 8
}

/// The template with the lane types of `c` x columns per lane and `fill`'s markers filled,
/// every marker left emptied (or 1 for block sizes).
fn fill_template(c: usize, fill: &[(&str, String)]) -> String {
    let mut s = TEMPLATE
        .replace("/*VI*/", lane_type(c))
        .replace("/*VO*/", lane_type(c / 2))
        .replace("/*LAST*/", &comp("v", c - 1, c));
    for (marker, text) in fill {
        s = s.replace(marker, text);
    }
    for marker in ["/*P*/", "/*K*/", "/*CI*/", "/*KO*/"] {
        s = s.replace(marker, "1u");
    }
    for marker in [
        "/*ACC*/",
        "/*BODY*/",
        "/*STORE*/",
        "/*XACC*/",
        "/*XBODY*/",
        "/*XSTORE*/",
        "/*WACC*/",
        "/*WROW*/",
        "/*WSTORE*/",
    ] {
        s = s.replace(marker, "");
    }
    s
}

/// WGSL declaring e{tag}_0 ..= e{tag}_{c}: the column left of a lane's `c` columns in `v`,
/// then its own.
fn taps(tag: &str, v: &str, c: usize) -> String {
    let mut s = format!("let e{tag}_0 = left_of({v}, lane);\n");
    for j in 0..c {
        writeln!(s, "let e{tag}_{} = {};", j + 1, comp(v, j, c)).unwrap();
    }
    s
}

/// The lane's tap kx of its c / 2 output columns (a VO) from a row's columns e{tag}_..:
/// output column j reads e{tag}_{2j + kx}.
fn tap(tag: &str, kx: usize, c: usize) -> String {
    let cols: Vec<String> = (0..c / 2)
        .map(|j| format!("e{tag}_{}", 2 * j + kx))
        .collect();
    format!("VO({})", cols.join(", "))
}

/// The unrolled WGSL of `forward` for `v` with `c` x columns per lane.
fn forward_source(v: S2Variant, c: usize) -> String {
    let (k, p) = (v.k, v.p);
    let mut acc = String::new();
    for o in 0..k {
        for q in 0..p {
            writeln!(acc, "    var a{o}_{q} = VO(0.0);").unwrap();
        }
    }
    let mut body = subgroup::weight_loads(k, "sp", false);
    for r in 0..2 * p + 1 {
        writeln!(body, "let v{r} = xrow(plane_row, iy0 + {r}, lane);").unwrap();
        body.push_str(&taps(&r.to_string(), &format!("v{r}"), c));
        for kx in 0..3 {
            writeln!(body, "let t{r}_{kx} = {};", tap(&r.to_string(), kx, c)).unwrap();
        }
    }
    for o in 0..k {
        for t in 0..9 {
            writeln!(body, "let k{o}_{t} = VO({});", subgroup::weight(o, t)).unwrap();
        }
        // Output row q reads input rows 2q, 2q + 1 and 2q + 2 of the block's.
        for q in 0..p {
            for ky in 0..3 {
                for kx in 0..3 {
                    writeln!(
                        body,
                        "a{o}_{q} = fma(t{}_{kx}, k{o}_{}, a{o}_{q});",
                        2 * q + ky,
                        3 * ky + kx
                    )
                    .unwrap();
                }
            }
        }
    }
    let mut store = String::new();
    for o in 0..k {
        writeln!(
            store,
            "    if co0 + {o}u < sp.cout {{\n\
             \x20       let co = co0 + {o}u;\n\
             \x20       var bv = VO(0.0);\n\
             \x20       if sp.extra == 1u {{ bv = VO(bias[co]); }}"
        )
        .unwrap();
        for q in 0..p {
            writeln!(
                store,
                "        if oy0 + {q}u < sp.ho {{\n\
                 \x20           ys[((n * sp.cout + co) * sp.ho + oy0 + {q}u) * 8u + lane] = a{o}_{q} + bv;\n\
                 \x20       }}"
            )
            .unwrap();
        }
        store.push_str("    }\n");
    }
    fill_template(
        c,
        &[
            ("/*P*/", format!("{p}u")),
            ("/*K*/", format!("{k}u")),
            ("/*ACC*/", acc),
            ("/*BODY*/", body),
            ("/*STORE*/", store),
        ],
    )
}

/// The unrolled WGSL of `grad_x` for `v` (`k` input channels × `p` rows of gy, 2p of gx,
/// per workgroup) with `c` x columns per lane.
fn grad_x_source(v: S2Variant, c: usize) -> String {
    let (k, p, half) = (v.k, v.p, c / 2);
    let mut acc = String::new();
    for o in 0..k {
        for r in 0..2 * p {
            for m in 0..c {
                writeln!(acc, "    var a{o}_{r}_{m} = 0.0;").unwrap();
            }
        }
    }
    // The block's input channels' weights of output channel co, w[co, ci, tap].
    let mut body = subgroup::weight_loads_at(k, |channel, eighth| {
        let tap = if eighth { "8u" } else { "lane" };
        format!("(co * sp.cin + min(ci0 + {channel}, sp.cin - 1u)) * 9u + {tap}")
    });
    // gy rows oy0 .. oy0 + p and each row's right neighbour's first column.
    for j in 0..=p {
        writeln!(
            body,
            "let g{j} = dyrow(n, co, oy0 + {j}u, lane);\n\
             let gr{j} = select(subgroupShuffleDown({}, 1u), 0.0, lane == 7u);",
            comp(&format!("g{j}"), 0, half)
        )
        .unwrap();
    }
    for o in 0..k {
        for t in 0..9 {
            writeln!(body, "let k{o}_{t} = {};", subgroup::weight(o, t)).unwrap();
        }
        for r in 0..2 * p {
            // gx row iy0 + r: even rows meet kernel row 1 of gy row r / 2, odd rows kernel
            // rows 0 and 2 of gy rows (r + 1) / 2 and (r − 1) / 2.
            let rows: Vec<(usize, usize)> = if r % 2 == 0 {
                vec![(1, r / 2)]
            } else {
                vec![(0, r.div_ceil(2)), (2, r / 2)]
            };
            for (ky, j) in rows {
                for m in 0..c {
                    // Column m meets kernel column kx of gy's column (m + 1 − kx) / 2 of the
                    // lane's, the right neighbour's first past them.
                    for kx in (0..3).filter(|kx| (m + 1 + kx) % 2 == 0 && m + 1 >= *kx) {
                        let d = (m + 1 - kx) / 2;
                        let src = if d < half {
                            comp(&format!("g{j}"), d, half)
                        } else {
                            format!("gr{j}")
                        };
                        writeln!(
                            body,
                            "a{o}_{r}_{m} = fma({src}, k{o}_{}, a{o}_{r}_{m});",
                            3 * ky + kx
                        )
                        .unwrap();
                    }
                }
            }
        }
    }
    let mut store = String::new();
    for o in 0..k {
        writeln!(store, "    if ci0 + {o}u < sp.cin {{").unwrap();
        for r in 0..2 * p {
            let cols: Vec<String> = (0..c).map(|m| format!("a{o}_{r}_{m}")).collect();
            writeln!(
                store,
                "        if iy0 + {r}u < sp.h {{\n\
                 \x20           let i = ((n * sp.cin + ci0 + {o}u) * sp.h + iy0 + {r}u) * 8u + lane;\n\
                 \x20           var e = VI(0.0);\n\
                 \x20           if sp.extra == 2u {{ e = addend[i]; }}\n\
                 \x20           gxs[i] = VI({}) + e;\n\
                 \x20       }}",
                cols.join(", ")
            )
            .unwrap();
        }
        store.push_str("    }\n");
    }
    fill_template(
        c,
        &[
            ("/*P*/", format!("{p}u")),
            ("/*K*/", format!("{k}u")),
            ("/*XACC*/", acc),
            ("/*XBODY*/", body),
            ("/*XSTORE*/", store),
        ],
    )
}

/// The unrolled WGSL of `grad_w` for `v` with `c` x columns per lane.
fn grad_w_source(v: S2WVariant, c: usize) -> String {
    let (ko, ci) = (v.ko, v.ci);
    let mut acc = String::new();
    for o in 0..ko {
        for i in 0..ci {
            for t in 0..9 {
                writeln!(acc, "    var a{o}_{i}_{t} = 0.0;").unwrap();
            }
        }
    }
    // x{i}_{m}: the taps of the row 2·oy − 1 of input channel i (the previous output row's
    // 2·oy + 1).
    for i in 0..ci {
        for m in 0..=c {
            writeln!(acc, "    var x{i}_{m} = 0.0;").unwrap();
        }
    }
    let mut row = String::new();
    for o in 0..ko {
        writeln!(row, "let g{o} = gyrow(n, co0 + {o}u, oy, lane);").unwrap();
    }
    for i in 0..ci {
        writeln!(
            row,
            "let plane{i} = (n * sp.cin + min(ci0 + {i}u, sp.cin - 1u)) * sp.h;\n\
             let va{i} = xrow(plane{i}, 2 * i32(oy), lane);\n\
             let vb{i} = xrow(plane{i}, 2 * i32(oy) + 1, lane);"
        )
        .unwrap();
        row.push_str(&taps(&format!("a{i}"), &format!("va{i}"), c));
        row.push_str(&taps(&format!("b{i}"), &format!("vb{i}"), c));
        // Above an image's first output row: the zero padding.
        for m in 0..=c {
            writeln!(row, "let ep{i}_{m} = select(x{i}_{m}, 0.0, oy == 0u);").unwrap();
        }
    }
    let half = c / 2;
    for o in 0..ko {
        for i in 0..ci {
            for (ky, tag) in ["p", "a", "b"].iter().enumerate() {
                for kx in 0..3 {
                    let products: Vec<String> = (0..half)
                        .map(|j| {
                            format!(
                                "{} * e{tag}{i}_{}",
                                comp(&format!("g{o}"), j, half),
                                2 * j + kx
                            )
                        })
                        .collect();
                    writeln!(
                        row,
                        "a{o}_{i}_{t} = a{o}_{i}_{t} + {};",
                        products.join(" + "),
                        t = 3 * ky + kx
                    )
                    .unwrap();
                }
            }
        }
    }
    for i in 0..ci {
        for m in 0..=c {
            writeln!(row, "x{i}_{m} = eb{i}_{m};").unwrap();
        }
    }
    let mut store = String::new();
    for o in 0..ko {
        for i in 0..ci {
            for t in 0..9 {
                writeln!(
                    store,
                    "    let s{o}_{i}_{t} = subgroupAdd(a{o}_{i}_{t});\n\
                     \x20   if lane == 0u && co0 + {o}u < sp.cout && ci0 + {i}u < sp.cin {{\n\
                     \x20       out[wid.z * sp.numel + ((co0 + {o}u) * sp.cin + ci0 + {i}u) * 9u + {t}u] = s{o}_{i}_{t};\n\
                     \x20   }}"
                )
                .unwrap();
            }
        }
    }
    fill_template(
        c,
        &[
            ("/*CI*/", format!("{ci}u")),
            ("/*KO*/", format!("{ko}u")),
            ("/*WACC*/", acc),
            ("/*WROW*/", row),
            ("/*WSTORE*/", store),
        ],
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct S2 {
    n: u32,
    cin: u32,
    h: u32,
    cout: u32,
    ho: u32,
    extra: u32,
    per_chunk: u32,
    numel: u32,
}

fn checked(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    subgroup::require(x.gpu(), "conv_rows_s2")?;
    geometry(x, w, p)
}

/// y = conv2d(x, w) + b for a convolution these kernels run (see [`applies`]).
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: S2Variant,
) -> Result<Tensor> {
    if v.k == 0 || !v.k.is_multiple_of(8) || v.p == 0 || v.k * v.p > 64 {
        bail!("conv_rows_s2: variant {v} needs k a multiple of 8, p >= 1 and k·p <= 64");
    }
    let g = checked(x, w, p)?;
    super::check_bias("conv_rows_s2", b, g.cout)?;
    let c = columns(g.w);
    let name = format!("conv_rows_s2_k{}p{}c{c}", v.k, v.p);
    let kernel = super::generated(name, "forward", || forward_source(v, c));
    let gpu = x.gpu();
    let y = Tensor::empty(gpu, &[g.n, g.cout, g.ho, g.wo], DType::F32)?;
    let sp = S2 {
        n: u(g.n),
        cin: u(g.cin),
        h: u(g.h),
        cout: u(g.cout),
        ho: u(g.ho),
        extra: u32::from(b.is_some()),
        ..Default::default()
    };
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&sp),
        &[x.buf(), w.buf(), b.unwrap_or(w).buf()],
        &[y.buf()],
        [u(g.ho.div_ceil(v.p)), u(g.cout.div_ceil(v.k)), u(g.n)],
    )?;
    Ok(y)
}

/// gx of y = conv2d(x, w) + b given gy, plus `acc` (of x's shape) when given, for a
/// convolution these kernels run (see [`applies`]); `v.k` input channels × `v.p` rows of gy
/// (2·p of gx) per workgroup. `x` gives the input's shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: S2Variant,
) -> Result<Tensor> {
    if v.k == 0 || !v.k.is_multiple_of(8) || v.p == 0 || v.k * v.p > 32 {
        bail!("conv_rows_s2 grad_x: variant {v} needs k a multiple of 8, p >= 1, k·p <= 32");
    }
    let g = checked(x, w, p)?;
    check_gy(&g, gy)?;
    super::check_acc("conv_rows_s2", acc, x.shape())?;
    let c = columns(g.w);
    let name = format!("conv_rows_s2_x_k{}p{}c{c}", v.k, v.p);
    let kernel = super::generated(name, "grad_x", || grad_x_source(v, c));
    let gpu = x.gpu();
    let gx = Tensor::empty(gpu, x.shape(), DType::F32)?;
    let sp = S2 {
        n: u(g.n),
        cin: u(g.cin),
        h: u(g.h),
        cout: u(g.cout),
        ho: u(g.ho),
        extra: if acc.is_some() { 2 } else { 0 },
        ..Default::default()
    };
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&sp),
        &[gy.buf(), w.buf(), acc.unwrap_or(gy).buf()],
        &[gx.buf()],
        [u(g.h.div_ceil(2 * v.p)), u(g.cin.div_ceil(v.k)), u(g.n)],
    )?;
    Ok(gx)
}

/// gw of y = conv2d(x, w) + b given gy, for a convolution these kernels run (see
/// [`applies`]); the images split into chunks so that about `v.target` workgroups run, their
/// partial sums added in chunk order (deterministic).
pub fn grad_w(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    p: Conv2dParams,
    v: S2WVariant,
) -> Result<Tensor> {
    if v.ko == 0 || v.ci == 0 || v.ko * v.ci > 64 {
        bail!("conv_rows_s2 grad_w: variant {v} needs 1 <= ko·ci <= 64");
    }
    let g = checked(x, w, p)?;
    check_gy(&g, gy)?;
    let c = columns(g.w);
    let name = format!("conv_rows_s2_w_ko{}ci{}c{c}", v.ko, v.ci);
    let kernel = super::generated(name, "grad_w", || grad_w_source(v, c));
    let blocks = [g.cin.div_ceil(v.ci), g.cout.div_ceil(v.ko)];
    let gpu = x.gpu();
    super::chunked_grad_w(
        w,
        g.n,
        blocks[0] * blocks[1],
        v.target,
        |per_chunk, chunks, out| {
            let sp = S2 {
                n: u(g.n),
                cin: u(g.cin),
                h: u(g.h),
                cout: u(g.cout),
                ho: u(g.ho),
                per_chunk: u(per_chunk),
                numel: u(w.numel()),
                ..Default::default()
            };
            gpu.dispatch(
                &kernel,
                bytemuck::bytes_of(&sp),
                &[x.buf(), gy.buf()],
                &[out.buf()],
                [u(blocks[0]), u(blocks[1]), u(chunks)],
            )
        },
    )
}
