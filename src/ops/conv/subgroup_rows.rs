//! Dense 3×3 convolutions at stride 1 on maps 4 or a multiple of 8 columns wide, one
//! subgroup per "row" of 8·C values (`shaders/conv_subgroup_rows.wgsl`), for lavapipe.
//!
//! lavapipe runs a workgroup of 8 invocations as one 8-wide vector and loads a storage
//! buffer lane by lane: an f32 load per lane costs about as much as a vec4 one
//! (`examples/lavapipe_costs.rs`: on this 2-core Xeon about 18-54 ns for either, against
//! about 0.7 ns for an 8-wide FMA). `subgroup` and `subgroup_w` load 8 columns with two loads
//! (the lanes' own columns and the two past them); here lane l holds C adjacent columns as
//! one `f32`, `vec2` or `vec4`, so one load brings 8·C values ([`Layout`]): on maps 4 or 8
//! wide C = 4 and a subgroup row is 8 or 4 image rows (the rows above and below a lane's
//! come from the other lanes and the subgroup rows before and after); on wider maps
//! a row is cut into tiles of 8·C columns (C = 4, 2 or 1, the largest that divides it), the
//! inner taps come from the neighbouring lanes and only lanes 0 and 7 read past the tile. The
//! ResNet-32s' maps at 32×32 input are 32, 16 and 8 columns wide, at 224×224 224, 112 and 56
//! (seven tiles of 32, 16 and 8).
//!
//! Forward and grad_x (the transposed, flipped kernel) compute K output channels × P output
//! rows per workgroup, each output's 9 products in turn (one load and store of an
//! accumulator a compiler keeps in memory per input channel, not per product); grad_w sums
//! KO output × CI input channels' 9 taps per workgroup over a chunk of images, each lane's C
//! columns into one sum. Each variant's body is written out unrolled and compiled once per
//! process (`generated`). `examples/conv_subgroup_lab.rs` times them against the engine's
//! default (see `choice`).

use super::{check_gy, subgroup, u, Conv2dParams, Geometry};
use crate::gpu::{groups, Kernel, Texels};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("../../../shaders/conv_subgroup_rows.wgsl");

/// Block sizes of `forward` / `grad_x`: `k` output channels (a multiple of 8) × `p` output
/// subgroup rows ([`subgroup_rows`]) per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowsVariant {
    pub k: usize,
    pub p: usize,
}

impl std::fmt::Display for RowsVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rows k{}p{}", self.k, self.p)
    }
}

/// The forward / grad_x variants worth timing.
pub const ROWS_VARIANTS: &[RowsVariant] = &[
    RowsVariant { k: 8, p: 2 },
    RowsVariant { k: 8, p: 4 },
    RowsVariant { k: 8, p: 8 },
    RowsVariant { k: 16, p: 4 },
    RowsVariant { k: 8, p: 16 },
];

/// Block sizes of `grad_w`: `ko` output × `ci` input channels per workgroup, and `target`
/// workgroups in all (more chunks of images when the blocks are fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowsWVariant {
    pub ko: usize,
    pub ci: usize,
    pub target: usize,
}

impl std::fmt::Display for RowsWVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rows-w ko{}ci{}", self.ko, self.ci)
    }
}

/// The grad_w variants worth timing (`target` 8: four workgroups per thread on 2 cores).
pub const ROWS_W_VARIANTS: &[RowsWVariant] = &[
    RowsWVariant {
        ko: 4,
        ci: 4,
        target: 8,
    },
    RowsWVariant {
        ko: 8,
        ci: 4,
        target: 8,
    },
    RowsWVariant {
        ko: 8,
        ci: 8,
        target: 8,
    },
    RowsWVariant {
        ko: 16,
        ci: 4,
        target: 8,
    },
];

/// Whether `forward` and `grad_w` run this convolution: dense, 3×3, padding 1, stride 1,
/// dilation 1, on a map 4 or a multiple of 8 columns wide, on a device that
/// [`subgroup::supported`].
pub fn applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup::supported(x.gpu()) && geometry(x, w, p, 1).is_ok()
}

/// How many subgroup rows cover a map `h` × `w` (`w` 4 or a multiple of 8): `h` on maps 16
/// columns wide and more, fewer on those 4 and 8 wide, whose subgroup rows hold several image
/// rows.
/// `RowsVariant::p` counts these.
pub fn subgroup_rows(h: usize, w: usize) -> usize {
    Layout::of(w).rows(h)
}

/// Whether `grad_x` runs this convolution: as [`applies`], at stride 1 or 2.
pub fn grad_x_applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup::supported(x.gpu()) && geometry(x, w, p, 2).is_ok()
}

/// The geometry of a convolution these kernels run at strides up to `max_stride`.
pub(super) fn geometry(
    x: &Tensor,
    w: &Tensor,
    p: Conv2dParams,
    max_stride: usize,
) -> Result<Geometry> {
    let g = super::geometry(x, w, p)?;
    if p.groups != 1
        || (g.kh, g.kw) != (3, 3)
        || p.padding != 1
        || p.dilation != 1
        || !(1..=max_stride).contains(&p.stride)
        || !(g.w.is_multiple_of(8) || g.w == 4)
    {
        let strides = if max_stride == 1 { "1" } else { "1 or 2" };
        bail!(
            "conv_subgroup_rows: only dense 3x3 convolutions with padding 1, dilation 1 and \
             stride {strides} on maps 4 or a multiple of 8 wide, got a {}x{} kernel on {} \
             columns, {p:?}",
            g.kh,
            g.kw,
            g.w
        );
    }
    Ok(g)
}

/// The WGSL type of a lane's `c` columns.
pub(super) fn lane_type(c: usize) -> &'static str {
    match c {
        1 => "f32",
        2 => "vec2<f32>",
        _ => "vec4<f32>",
    }
}

/// Component `j` of a lane's `c` columns held in `name`.
pub(super) fn comp(name: &str, j: usize, c: usize) -> String {
    if c == 1 {
        name.to_string()
    } else {
        format!("{name}.{}", ["x", "y", "z", "w"][j])
    }
}

/// WGSL for the sum of the `c` components of a lane's value `name`, in order.
pub(super) fn lane_sum(name: &str, c: usize) -> String {
    (0..c)
        .map(|j| comp(name, j, c))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// WGSL declaring e{tag}_0 ..= e{tag}_{c+1}: the columns left of, under and right of a lane's
/// `c` columns held in `v`, row `row` of the plane starting at row `plane`.
pub(super) fn taps(tag: &str, v: &str, c: usize, plane: &str, row: &str) -> String {
    let mut s = format!("let e{tag}_0 = left_of({v}, {plane}, {row}, tile, lane);\n");
    for j in 0..c {
        writeln!(s, "let e{tag}_{} = {};", j + 1, comp(v, j, c)).unwrap();
    }
    writeln!(
        s,
        "let e{tag}_{} = right_of({v}, {plane}, {row}, tile, lane);",
        c + 1
    )
    .unwrap();
    s
}

/// How a subgroup holds a map `w` columns wide: `c` columns per lane, `g` image rows per
/// subgroup row (1: a tile of 8·c columns of one image row), `tiles` per image row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) c: usize,
    pub(super) g: usize,
    pub(super) tiles: usize,
}

impl Layout {
    /// Maps 4, 8 or 16 wide: a vec4 per lane, 32 / w image rows per subgroup row. Else tiles
    /// of 8·c columns, c the largest of 4, 2 and 1 that divides the row (w a multiple of 8).
    /// In the plain 32×32 batch-16 step's profile (lavapipe), the 8-wide layers' grad_w,
    /// forward and grad_x took 137, 60 and 70 ms with 4 image rows per subgroup row against
    /// 190, 85 and 116 with a tile of one column per lane; the 16-wide layers' 86, 64 and 80
    /// ms with 2 rows against 94, 60 and 83 with tiles of two columns. Since `winograd_rows`
    /// took the large forward and grad_x passes, grad_w is what these kernels run most:
    /// 32→32 16² grad_w (ko16ci4, batch 32, CPU ms medians side by side, three rounds of
    /// examples/conv_rows_ab.rs) 14.9, 11.1, 12.9 with 2 rows against 17.2, 18.4, 13.5.
    fn of(w: usize) -> Layout {
        if [4, 8, 16].contains(&w) {
            return Layout {
                c: 4,
                g: 32 / w,
                tiles: 1,
            };
        }
        let c = [4, 2, 1]
            .into_iter()
            .find(|c| w.is_multiple_of(8 * c))
            .unwrap_or(1);
        Layout {
            c,
            g: 1,
            tiles: w / (8 * c),
        }
    }

    /// The kernel name's mark of a layout whose image rows span several tiles ("m"; its
    /// kernels read the tiles beside a lane's, `MULTI_TILE` in the template).
    pub(super) fn multi(self) -> &'static str {
        if self.tiles > 1 {
            "m"
        } else {
            ""
        }
    }

    /// Subgroup rows that cover `h` image rows.
    pub(super) fn rows(self, h: usize) -> usize {
        h.div_ceil(self.g)
    }
}

/// The template with `V`, `G` and `LR` set for `layout` and the markers in `fill` replaced,
/// `/*WT*/` (the weights' element type) f32 unless given, every other marker emptied (the
/// entry point not generated keeps an empty body).
pub(super) fn fill_template(layout: Layout, fill: &[(&str, String)]) -> String {
    let c = layout.c;
    let mut s = TEMPLATE
        .replace("/*V*/", lane_type(c))
        .replace("/*FIRST*/", &comp("v", 0, c))
        .replace("/*LAST*/", &comp("v", c - 1, c))
        .replace("/*G*/", &format!("{}u", layout.g))
        .replace("/*LR*/", &format!("{}u", 8 / layout.g))
        .replace("/*MULTI*/", &(layout.tiles > 1).to_string());
    for (marker, text) in fill {
        s = s.replace(marker, text);
    }
    for marker in ["/*P*/", "/*K*/", "/*CI*/", "/*KO*/"] {
        s = s.replace(marker, "1u");
    }
    s = s.replace("/*WT*/", "f32");
    for marker in [
        "/*ACC*/",
        "/*BODY*/",
        "/*STORE*/",
        "/*WACC*/",
        "/*WPLANES*/",
        "/*WSTART*/",
        "/*WROW*/",
        "/*WSTORE*/",
    ] {
        s = s.replace(marker, "");
    }
    s
}

/// WGSL declaring t{tag}_0 ..= t{tag}_2: per lane, the kx-th tap of each of its `c` columns
/// held in `v`, row `row` of the plane starting at row `plane`.
fn tap_vectors(tag: &str, v: &str, c: usize, plane: &str, row: &str) -> String {
    let mut s = taps(tag, v, c, plane, row);
    for kx in 0..3 {
        let cols: Vec<String> = (0..c).map(|j| format!("e{tag}_{}", j + kx)).collect();
        writeln!(
            s,
            "let t{tag}_{kx} = {}({});",
            lane_type(c),
            cols.join(", ")
        )
        .unwrap();
    }
    s
}

/// The unrolled WGSL of `forward` for `v` on `layout` (`transposed`: grad_x).
fn forward_source(v: RowsVariant, layout: Layout, transposed: bool) -> String {
    let c = layout.c;
    let (k, p) = (v.k, v.p);
    let vt = lane_type(c);
    let mut acc = String::new();
    for o in 0..k {
        for q in 0..p {
            writeln!(acc, "    var a{o}_{q} = {vt}(0.0);").unwrap();
        }
    }
    let mut body = subgroup::weight_loads(k, "rp", transposed);
    // The P + 2 input rows and their taps: t{r}_{kx} holds, per lane, the kx-th tap of each of
    // its c columns. With one image row per subgroup row (g = 1) output row q reads input
    // rows q, q + 1 and q + 2 (t{q}, t{q+1}, t{q+2}); with g > 1 the image rows above and
    // below each lane's come from v{q+1}'s other lanes and v{q}, v{q+2} (tu{q}, td{q}).
    for r in 0..p + 2 {
        let row = format!("iy0 + {r}");
        writeln!(body, "let v{r} = xrow(plane_row, {row}, tile, lane);").unwrap();
        body.push_str(&tap_vectors(
            &r.to_string(),
            &format!("v{r}"),
            c,
            "plane_row",
            &row,
        ));
    }
    let mut rows_of = |q: usize| -> [String; 3] {
        if layout.g == 1 {
            return [q, q + 1, q + 2].map(|r| r.to_string());
        }
        let (up, down) = (format!("u{q}"), format!("d{q}"));
        writeln!(body, "let vu{q} = above(v{q}, v{}, lane);", q + 1).unwrap();
        writeln!(body, "let vd{q} = below(v{}, v{}, lane);", q + 1, q + 2).unwrap();
        let row = format!("iy0 + {}", q + 1);
        body.push_str(&tap_vectors(&up, &format!("vu{q}"), c, "plane_row", &row));
        body.push_str(&tap_vectors(&down, &format!("vd{q}"), c, "plane_row", &row));
        [up, (q + 1).to_string(), down]
    };
    let rows: Vec<[String; 3]> = (0..p).map(&mut rows_of).collect();
    for o in 0..k {
        for tap in 0..9 {
            writeln!(body, "let k{o}_{tap} = {vt}({});", subgroup::weight(o, tap)).unwrap();
        }
        for (q, tags) in rows.iter().enumerate() {
            for (ky, tag) in tags.iter().enumerate() {
                for kx in 0..3 {
                    writeln!(
                        body,
                        "a{o}_{q} = fma(t{tag}_{kx}, k{o}_{}, a{o}_{q});",
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
            "    if co0 + {o}u < rp.cout {{\n\
             \x20       let co = co0 + {o}u;\n\
             \x20       var bv = {vt}(0.0);\n\
             \x20       if rp.extra == 1u {{ bv = {vt}(bias[co]); }}"
        )
        .unwrap();
        for q in 0..p {
            writeln!(
                store,
                "        if (oy0 + {q}u) * G + lane / LR < rp.h {{\n\
                 \x20           let plane = (n * rp.cout + co) * rp.h * rp.tiles * 8u / G;\n\
                 \x20           let i = plane + (oy0 + {q}u) * rp.tiles * 8u + tile * 8u + lane;\n\
                 \x20           var e = bv;\n\
                 \x20           if rp.extra == 2u {{ e = addend[i]; }}\n\
                 \x20           ys[i] = a{o}_{q} + e;\n\
                 \x20       }}"
            )
            .unwrap();
        }
        store.push_str("    }\n");
    }
    fill_template(
        layout,
        &[
            ("/*P*/", format!("{p}u")),
            ("/*K*/", format!("{k}u")),
            ("/*ACC*/", acc),
            ("/*BODY*/", body),
            ("/*STORE*/", store),
        ],
    )
}

/// The unrolled WGSL of `grad_w` for `v` on `layout`.
fn grad_w_source(v: RowsWVariant, layout: Layout) -> String {
    let (ko, ci, c) = (v.ko, v.ci, layout.c);
    let mut acc = String::new();
    for o in 0..ko {
        for i in 0..ci {
            for tap in 0..9 {
                writeln!(acc, "    var a{o}_{i}_{tap} = 0.0;").unwrap();
            }
        }
    }
    // Per input channel i, before the first row: the taps of x's (subgroup) rows −1 (zero)
    // and 0 as x{i}_{0,1}_{m} (m the column from the lane's first − 1 to its last + 1). Input
    // channels past Cin read the last one (their sums are not stored).
    let (mut planes, mut start) = (String::new(), String::new());
    for i in 0..ci {
        writeln!(
            planes,
            "        let plane{i} = (n * rp.cin + min(ci0 + {i}u, rp.cin - 1u)) * rp.h;"
        )
        .unwrap();
        writeln!(start, "        let r{i} = xrow(plane{i}, 0, tile, lane);").unwrap();
        let plane = format!("plane{i}");
        start.push_str(&taps(&format!("s{i}"), &format!("r{i}"), c, &plane, "0"));
        for m in 0..c + 2 {
            writeln!(acc, "    var x{i}_0_{m} = 0.0;\n    var x{i}_1_{m} = 0.0;").unwrap();
            writeln!(start, "        x{i}_0_{m} = 0.0;").unwrap();
            writeln!(start, "        x{i}_1_{m} = es{i}_{m};").unwrap();
        }
    }
    let mut row = String::new();
    for o in 0..ko {
        writeln!(row, "let g{o} = gyrow(n, co0 + {o}u, oy, tile, lane);").unwrap();
    }
    // The taps of each kernel row ky for channel i: `tap(i, ky, m)` names column m's. The
    // next row's taps come from its load; with g > 1 the taps of the image rows above and
    // below a lane's are those of the lanes LR up and down (the taps move between lanes as
    // the columns they come from), taken from the kept rows' by shuffles.
    for i in 0..ci {
        let plane = format!("plane{i}");
        writeln!(row, "let r{i} = xrow(plane{i}, i32(oy) + 1, tile, lane);").unwrap();
        row.push_str(&taps(
            &format!("n{i}"),
            &format!("r{i}"),
            c,
            &plane,
            "i32(oy) + 1",
        ));
        if layout.g > 1 {
            for m in 0..c + 2 {
                writeln!(
                    row,
                    "let eu{i}_{m} = above_f32(x{i}_0_{m}, x{i}_1_{m}, lane);\n\
                     let ed{i}_{m} = below_f32(x{i}_1_{m}, en{i}_{m}, lane);"
                )
                .unwrap();
            }
        }
    }
    let tap = |i: usize, ky: usize, m: usize| -> String {
        match (layout.g > 1, ky) {
            (_, 1) => format!("x{i}_1_{m}"),
            (true, 0) => format!("eu{i}_{m}"),
            (true, _) => format!("ed{i}_{m}"),
            (false, 0) => format!("x{i}_0_{m}"),
            (false, _) => format!("en{i}_{m}"),
        }
    };
    // Each sum takes the lane's c products of a row in turn.
    for o in 0..ko {
        for i in 0..ci {
            for ky in 0..3 {
                for kx in 0..3 {
                    let a = format!("a{o}_{i}_{}", 3 * ky + kx);
                    for j in 0..c {
                        writeln!(
                            row,
                            "{a} = fma({}, {}, {a});",
                            comp(&format!("g{o}"), j, c),
                            tap(i, ky, j + kx)
                        )
                        .unwrap();
                    }
                }
            }
        }
    }
    // Slide the window down a row.
    for i in 0..ci {
        for m in 0..c + 2 {
            writeln!(row, "x{i}_0_{m} = x{i}_1_{m};\nx{i}_1_{m} = en{i}_{m};").unwrap();
        }
    }
    let mut store = String::new();
    for o in 0..ko {
        for i in 0..ci {
            writeln!(
                store,
                "    if co0 + {o}u < rp.cout && ci0 + {i}u < rp.cin {{\n\
                 \x20       let base = wid.z * rp.numel + ((co0 + {o}u) * rp.cin + ci0 + {i}u) * 9u;"
            )
            .unwrap();
            for tap in 0..9 {
                writeln!(
                    store,
                    "        let s{tap} = subgroupAdd(a{o}_{i}_{tap});\n\
                     \x20       if lane == 0u {{ out[base + {tap}u] = s{tap}; }}"
                )
                .unwrap();
            }
            store.push_str("    }\n");
        }
    }
    fill_template(
        layout,
        &[
            ("/*CI*/", format!("{ci}u")),
            ("/*KO*/", format!("{ko}u")),
            ("/*WACC*/", acc),
            ("/*WPLANES*/", planes),
            ("/*WSTART*/", start),
            ("/*WROW*/", row),
            ("/*WSTORE*/", store),
        ],
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct RowP {
    n: u32,
    cin: u32,
    h: u32,
    cout: u32,
    extra: u32,
    per_chunk: u32,
    numel: u32,
    tiles: u32,
}

/// One dispatch of `forward`: src [n, cin, h, w] to dst [n, cout, h, w], with `extra` and its
/// mode (1 bias, 2 added at the output's index).
#[allow(clippy::too_many_arguments)]
fn run(
    v: RowsVariant,
    transposed: bool,
    dims: [usize; 5],
    src: &Tensor,
    wt: &Tensor,
    extra: Option<(&Tensor, u32)>,
    dst: &Tensor,
) -> Result<()> {
    check_variant("conv_subgroup_rows", v)?;
    let layout = Layout::of(dims[3]);
    let name = format!(
        "conv_subgroup_rows_k{}p{}c{}g{}t{}{}",
        v.k,
        v.p,
        layout.c,
        layout.g,
        u8::from(transposed),
        layout.multi()
    );
    let kernel = super::generated(name, "forward", || forward_source(v, layout, transposed));
    dispatch_forward(&kernel, layout, (v, 1), dims, src, (wt, &[]), extra, dst)
}

/// The forward kernels' limits on `v` (`what` names the family in the error).
pub(super) fn check_variant(what: &str, v: RowsVariant) -> Result<()> {
    if v.k == 0 || !v.k.is_multiple_of(8) || v.p == 0 || v.p > 16 {
        bail!("{what}: variant {v} needs k a multiple of 8 and 1 <= p <= 16");
    }
    Ok(())
}

/// One dispatch of a forward kernel of the template (`kernel`, generated for `layout` and
/// `v`, `images` images per workgroup along z): src [n, cin, h, w] to dst [n, cout, h, w] with
/// weights `wt` in the kernel's layout,
/// and `extra` and its mode (1 bias, 2 added at the output's index), and `textures` for a
/// kernel that reads its weights from them.
#[allow(clippy::too_many_arguments)]
pub(super) fn dispatch_forward(
    kernel: &Kernel,
    layout: Layout,
    (v, images): (RowsVariant, usize),
    [n, cin, h, _, cout]: [usize; 5],
    src: &Tensor,
    (wt, textures): (&Tensor, &[&Texels]),
    extra: Option<(&Tensor, u32)>,
    dst: &Tensor,
) -> Result<()> {
    let pr = RowP {
        n: u(n),
        cin: u(cin),
        h: u(h),
        cout: u(cout),
        extra: extra.map_or(0, |e| e.1),
        tiles: u(layout.tiles),
        ..Default::default()
    };
    let (bias, addend) = match extra {
        Some((t, 1)) => (t, wt),
        Some((t, _)) => (wt, t),
        None => (wt, wt),
    };
    src.gpu().dispatch_with(
        kernel,
        bytemuck::bytes_of(&pr),
        &[src.buf(), wt.buf(), bias.buf(), addend.buf()],
        &[dst.buf()],
        textures,
        [
            u(layout.tiles * layout.rows(h).div_ceil(v.p)),
            u(cout.div_ceil(v.k)),
            u(n.div_ceil(images)),
        ],
    )
}

/// grad_x's source for the forward kernel: gy itself at stride 1; at stride 2 gy spread onto
/// x's grid (`g`), zeros between (`shaders/zero_spread.wgsl`).
pub(super) fn grad_x_source(gy: &Tensor, g: &Geometry, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        Ok(gy.clone())
    } else {
        zero_spread(gy, g.h, g.w)
    }
}

/// y = conv2d(x, w) + b for a dense 3×3 convolution with padding 1 and stride 1 on a map 4 or
/// a multiple of 8 columns wide (see [`applies`]), on variant `v`.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: RowsVariant,
) -> Result<Tensor> {
    let gpu = x.gpu();
    subgroup::require(gpu, "conv_subgroup_rows")?;
    let g = geometry(x, w, p, 1)?;
    super::check_bias("conv_subgroup_rows", b, g.cout)?;
    let y = Tensor::empty(gpu, &[g.n, g.cout, g.h, g.w], DType::F32)?;
    let dims = [g.n, g.cin, g.h, g.w, g.cout];
    run(v, false, dims, x, w, b.map(|b| (b, 1)), &y)?;
    Ok(y)
}

/// gx of y = conv2d(x, w) + b given gy, plus `acc` (of x's shape) when given, as the forward
/// correlation of gy with the transposed, flipped kernel (see [`grad_x_applies`]); at stride
/// 2, of gy spread onto x's grid with zeros between (`shaders/zero_spread.wgsl`): four times
/// the products, a quarter of them by zero, but one row per subgroup. `x` gives the input's
/// shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: RowsVariant,
) -> Result<Tensor> {
    let gpu = x.gpu();
    subgroup::require(gpu, "conv_subgroup_rows")?;
    let g = geometry(x, w, p, 2)?;
    check_gy(&g, gy)?;
    super::check_acc("conv_subgroup_rows", acc, x.shape())?;
    let gx = Tensor::empty(gpu, x.shape(), DType::F32)?;
    let dims = [g.n, g.cout, g.h, g.w, g.cin];
    let src = grad_x_source(gy, &g, p.stride)?;
    run(v, true, dims, &src, w, acc.map(|a| (a, 2)), &gx)?;
    Ok(gx)
}

/// gy [N, C, Ho, W / 2] spread onto [N, C, h, w] (w a multiple of 4): gy's values at even
/// rows and columns, zero between.
fn zero_spread(gy: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    const SPREAD: Kernel = Kernel {
        name: "zero_spread",
        source: include_str!("../../../shaders/zero_spread.wgsl"),
        entry: "spread",
    };
    let [n, c, ho, _] = gy.shape() else {
        bail!(
            "zero_spread: gy must be [N, C, Ho, Wo], got {:?}",
            gy.shape()
        );
    };
    let spread = Tensor::empty(gy.gpu(), &[*n, *c, h, w], DType::F32)?;
    let rows = n * c * h;
    let params = [u(rows), u(h), u(w / 4), u(*ho)];
    gy.gpu().dispatch(
        &SPREAD,
        bytemuck::cast_slice(&params),
        &[gy.buf()],
        &[spread.buf()],
        groups((rows * w / 4).div_ceil(64)),
    )?;
    Ok(spread)
}

/// gw [Cout, Cin, 3, 3] of y = conv2d(x, w) given gy (see [`applies`]; no bias), on variant
/// `v`.
pub fn grad_w(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    p: Conv2dParams,
    v: RowsWVariant,
) -> Result<Tensor> {
    let gpu = x.gpu();
    subgroup::require(gpu, "conv_subgroup_rows grad_w")?;
    if v.ko == 0 || v.ci == 0 || v.ko * v.ci > 64 {
        bail!("conv_subgroup_rows grad_w: variant {v} needs 1 <= ko·ci <= 64");
    }
    let g = geometry(x, w, p, 1)?;
    check_gy(&g, gy)?;
    let layout = Layout::of(g.w);
    let name = format!(
        "conv_subgroup_rows_w_ko{}ci{}c{}g{}{}",
        v.ko,
        v.ci,
        layout.c,
        layout.g,
        layout.multi()
    );
    let kernel = super::generated(name, "grad_w", || grad_w_source(v, layout));
    let blocks = [g.cin.div_ceil(v.ci), g.cout.div_ceil(v.ko)];
    super::chunked_grad_w(
        w,
        g.n,
        blocks[0] * blocks[1],
        v.target,
        |per_chunk, chunks, out| {
            let pr = RowP {
                n: u(g.n),
                cin: u(g.cin),
                h: u(g.h),
                cout: u(g.cout),
                per_chunk: u(per_chunk),
                numel: u(w.numel()),
                tiles: u(layout.tiles),
                ..Default::default()
            };
            gpu.dispatch(
                &kernel,
                bytemuck::bytes_of(&pr),
                &[x.buf(), gy.buf()],
                &[out.buf()],
                [u(blocks[0]), u(blocks[1]), u(chunks)],
            )
        },
    )
}
