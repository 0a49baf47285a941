//! Dense 3×3 convolutions at stride 1 by the one-dimensional Winograd transform along each
//! map row (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks"), forward
//! and grad_x, for lavapipe: on the row-tile layout of `subgroup_rows` with four columns per
//! lane.
//!
//! lavapipe runs a kernel's arithmetic as 8-wide vector instructions, an FMA as a multiply
//! and an add (its NIR options lower ffma). F(4, 3) computes the 4 outputs of a 3-tap row
//! filter from the 6 input columns under and beside them with 6 products instead of 12:
//! y = Aᵀ[(G g) ⊙ (Bᵀ d)] (points 0, ±1, ±2, ∞); the sums over input channels and kernel
//! rows are linear, so they are taken on the 6 transformed products and Aᵀ is applied once
//! per output at the end. Per input channel and row, Bᵀ d is computed once and used by every
//! output channel and the three kernel rows it meets; the weights' G g once per call
//! (`shaders/winograd_weights.wgsl`). Half the products did not make the passes twice as
//! fast: each sum is kept in memory between input channels and takes 3 products per visit
//! instead of 9 (lavapipe, batch 32, CPU time side by side: forward and grad_x 1.2-1.5x over
//! `subgroup_rows`' default). The weight gradient by the dual transform, F(3, 4), with one
//! product per sum and row, was no faster than `subgroup_rows`' grad_w, nor with 2 or 4 rows
//! per step (BENCHMARKS.md, session 11), and is not here.
//!
//! The loads, not the products, take about half of these kernels' time on lavapipe, which
//! reads a storage buffer at a per-lane index in a loop over the lanes (BENCHMARKS.md,
//! session 12). So the transformed weights are fetched from a texture (`crate::gpu::Texels`;
//! the plain 32×32 batch-16 step's profile: these passes 330 → 291 ms, the 8- and 16-wide
//! maps' blocks, which load the weights for fewer rows, 1.2x), and on maps of at most p
//! subgroup rows a workgroup takes whole images ([`Block`]).
//!
//! Maps 4, 8 and 16 wide hold 8, 4 and 2 image rows per subgroup row (the transformed rows
//! above and below a lane's come from the other lanes, as the columns they were made from),
//! maps a multiple of 32 wide tiles of 32 columns. `examples/conv_subgroup_lab.rs` times
//! them against `subgroup_rows`; `choice` picks them.

use super::subgroup_rows::{
    self, check_variant, comp, dispatch_forward, fill_template, geometry, grad_x_source, taps,
    Layout, RowsVariant,
};
use super::{check_gy, subgroup, u, Conv2dParams};
use crate::gpu::{groups, texel_floats, Kernel, Texels, TEXEL_BINDING, TEXEL_ROW};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::fmt::Write as _;

/// The layout these kernels run on a map `w` columns wide: four columns per lane, several
/// image rows per subgroup row on maps 4, 8 and 16 wide, tiles of 32 columns on maps a
/// multiple of 32 wide; None on others.
fn layout(w: usize) -> Option<Layout> {
    match w {
        4 | 8 | 16 => Some(Layout {
            c: 4,
            g: 32 / w,
            tiles: 1,
        }),
        _ if w.is_multiple_of(32) => Some(Layout {
            c: 4,
            g: 1,
            tiles: w / 32,
        }),
        _ => None,
    }
}

/// Whether `forward` runs this convolution: as `subgroup_rows::applies`, on a
/// map 4, 8, 16 or a multiple of 32 columns wide.
pub fn applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup_rows::applies(x, w, p) && layout(x.shape()[3]).is_some()
}

/// Whether `grad_x` runs this convolution: as [`applies`], at stride 1 or 2.
pub fn grad_x_applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup_rows::grad_x_applies(x, w, p) && layout(x.shape()[3]).is_some()
}

/// How many subgroup rows cover a map `h` × `w` here (`RowsVariant::p` counts these); 0 on
/// maps these kernels do not run.
pub fn subgroup_rows(h: usize, w: usize) -> usize {
    layout(w).map_or(0, |l| l.rows(h))
}

/// The layout of a map `w` wide, or an error naming the widths these kernels take.
fn layout_of(w: usize) -> Result<Layout> {
    match layout(w) {
        Some(l) => Ok(l),
        None => bail!(
            "conv_winograd_rows: only maps 4, 8, 16 or a multiple of 32 columns wide, got {w}"
        ),
    }
}

/// Bᵀ d: the 6 transformed values of the columns d0 ..= d5 (`d(j)` names column j).
fn input_transform(d: impl Fn(usize) -> String) -> [String; 6] {
    let [d0, d1, d2, d3, d4, d5] = [0, 1, 2, 3, 4, 5].map(d);
    [
        format!("4.0 * {d0} - 5.0 * {d2} + {d4}"),
        format!("{d3} + {d4} - 4.0 * ({d1} + {d2})"),
        format!("4.0 * ({d1} - {d2}) + {d4} - {d3}"),
        format!("2.0 * ({d3} - {d1}) + {d4} - {d2}"),
        format!("2.0 * ({d1} - {d3}) + {d4} - {d2}"),
        format!("4.0 * {d1} - 5.0 * {d3} + {d5}"),
    ]
}

/// WGSL declaring `{name}_0 ..= {name}_5`, Bᵀ of the 6 columns under and beside a lane's 4
/// held in `v` (row `row` of the plane starting at row `plane`).
fn transformed_row(name: &str, v: &str, plane: &str, row: &str) -> String {
    let mut s = taps(name, v, 4, plane, row);
    for (t, e) in input_transform(|j| format!("e{name}_{j}"))
        .iter()
        .enumerate()
    {
        writeln!(s, "let {name}_{t} = {e};").unwrap();
    }
    s
}

/// What a workgroup computes: `p` subgroup rows of one image from row oy0 on (`Rows`: the
/// rows above and below the block loaded too), or, on maps of `r` <= p subgroup rows, p / r
/// whole images (`Images`: nothing to load above or below an image, and each weight load
/// serves p / r images; measured in `choice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Rows,
    Images { r: usize },
}

impl Block {
    fn of(v: RowsVariant, layout: Layout, h: usize) -> Block {
        match layout.rows(h) {
            r if r <= v.p => Block::Images { r },
            _ => Block::Rows,
        }
    }

    /// Images per workgroup.
    fn images(self, v: RowsVariant) -> usize {
        match self {
            Block::Rows => 1,
            Block::Images { r } => v.p / r,
        }
    }
}

/// One of a workgroup's output rows: its sums' name stem, the transformed rows its three
/// kernel rows meet, and WGSL for its image and subgroup row.
struct Slot {
    sums: String,
    tags: [String; 3],
    image: String,
    row: String,
}

/// The transformed rows a subgroup row meets through kernel rows 0, 1 and 2, given the
/// loaded transformed rows above it, its own and below it (`rz`, zeros, outside the image):
/// with one image row per subgroup row those three; with several, the rows above and below
/// each lane's from the other lanes (`ru{name}`, `rd{name}`, written into `body`).
fn kernel_rows(
    body: &mut String,
    layout: Layout,
    name: &str,
    [up, cur, down]: [String; 3],
) -> [String; 3] {
    if layout.g == 1 {
        return [up, cur, down];
    }
    for t in 0..6 {
        writeln!(
            body,
            "let ru{name}_{t} = above_f32({up}_{t}, {cur}_{t}, lane);\n\
             let rd{name}_{t} = below_f32({cur}_{t}, {down}_{t}, lane);"
        )
        .unwrap();
    }
    [format!("ru{name}"), cur, format!("rd{name}")]
}

/// Loads and transforms the input rows of `block` into `body`; returns the output rows.
fn load_rows(body: &mut String, v: RowsVariant, layout: Layout, block: Block) -> Vec<Slot> {
    let mut slots = Vec::new();
    match block {
        Block::Rows => {
            for r in 0..v.p + 2 {
                let row = format!("iy0 + {r}");
                writeln!(body, "let v{r} = xrow(plane_row, {row}, tile, lane);").unwrap();
                body.push_str(&transformed_row(
                    &format!("r{r}"),
                    &format!("v{r}"),
                    "plane_row",
                    &row,
                ));
            }
            for q in 0..v.p {
                let rows = [q, q + 1, q + 2].map(|r| format!("r{r}"));
                slots.push(Slot {
                    sums: format!("{q}"),
                    tags: kernel_rows(body, layout, &format!("{q}"), rows),
                    image: "n".into(),
                    row: format!("oy0 + {q}u"),
                });
            }
        }
        Block::Images { r } => {
            let images = block.images(v);
            for t in 0..6 {
                writeln!(body, "let rz_{t} = 0.0;").unwrap();
            }
            for m in 0..images {
                // Images past N read the last one (their sums are not stored).
                writeln!(
                    body,
                    "let plane{m} = (min(n * {images}u + {m}u, rp.n - 1u) * rp.cin + ci) * rp.h;"
                )
                .unwrap();
                for q in 0..r {
                    let (name, plane) = (format!("r{m}_{q}"), format!("plane{m}"));
                    writeln!(body, "let v{m}_{q} = xrow({plane}, {q}, tile, lane);").unwrap();
                    body.push_str(&transformed_row(
                        &name,
                        &format!("v{m}_{q}"),
                        &plane,
                        &q.to_string(),
                    ));
                }
                for q in 0..r {
                    let near = |d: isize| match q.checked_add_signed(d) {
                        Some(j) if j < r => format!("r{m}_{j}"),
                        _ => "rz".to_string(),
                    };
                    let rows = [near(-1), near(0), near(1)];
                    slots.push(Slot {
                        sums: format!("{m}_{q}"),
                        tags: kernel_rows(body, layout, &format!("{m}_{q}"), rows),
                        image: format!("n * {images}u + {m}u"),
                        row: format!("{q}u"),
                    });
                }
            }
        }
    }
    slots
}

/// The unrolled WGSL of `forward` for `v` on `layout` and `block` (grad_x too: the
/// transposed, flipped kernel is in the transformed weights, [`transformed_weights`]).
fn forward_source(v: RowsVariant, layout: Layout, block: Block) -> String {
    let k = v.k;
    // The K channels' 18 transformed weights of input channel ci lie together in the texture
    // (vec4s, output channels padded to a multiple of 8): lane l fetches vec4s l, l + 8, ..;
    // each is broadcast once.
    let vec4s = k * 18 / 4;
    let mut body =
        String::from("let ubase = (ci * ((rp.cout + 7u) / 8u * 8u) + co0) * 18u / 4u;\n");
    for m in 0..vec4s.div_ceil(8) {
        writeln!(body, "let u{m} = texel(ubase + {}u + lane);", 8 * m).unwrap();
    }
    for i in 0..vec4s {
        writeln!(
            body,
            "let b{i} = subgroupBroadcast(u{}, {}u);",
            i / 8,
            i % 8
        )
        .unwrap();
    }
    let slots = load_rows(&mut body, v, layout, block);
    let mut acc = String::new();
    for o in 0..k {
        for slot in &slots {
            for t in 0..6 {
                writeln!(acc, "    var m{o}_{}_{t} = 0.0;", slot.sums).unwrap();
            }
        }
    }
    // Each sum takes its three kernel rows' products in turn (measured on lavapipe: as fast
    // as blocks of 2 channels × 4 rows, which a compiler could keep in registers).
    for t in 0..6 {
        for o in 0..k {
            for slot in &slots {
                for (ky, tag) in slot.tags.iter().enumerate() {
                    let f = o * 18 + ky * 6 + t;
                    let m = format!("m{o}_{}_{t}", slot.sums);
                    writeln!(
                        body,
                        "{m} = fma({tag}_{t}, {}, {m});",
                        comp(&format!("b{}", f / 4), f % 4, 4)
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
             \x20       var bv = V(0.0);\n\
             \x20       if rp.extra == 1u {{ bv = V(bias[co]); }}"
        )
        .unwrap();
        for slot in &slots {
            // Aᵀ m: the lane's 4 outputs.
            let m = |t: usize| format!("m{o}_{}_{t}", slot.sums);
            writeln!(
                store,
                "        if {image} < rp.n && ({row}) * G + lane / LR < rp.h {{\n\
                 \x20           let plane = (({image}) * rp.cout + co) * rp.h * rp.tiles * 8u / G;\n\
                 \x20           let i = plane + ({row}) * rp.tiles * 8u + tile * 8u + lane;\n\
                 \x20           var e = bv;\n\
                 \x20           if rp.extra == 2u {{ e = addend[i]; }}\n\
                 \x20           let s12 = {m1} + {m2};\n\
                 \x20           let d12 = {m1} - {m2};\n\
                 \x20           let s34 = {m3} + {m4};\n\
                 \x20           let d34 = {m3} - {m4};\n\
                 \x20           ys[i] = vec4<f32>({m0} + s12 + s34, d12 + 2.0 * d34, \
                 s12 + 4.0 * s34, d12 + 8.0 * d34 + {m5}) + e;\n\
                 \x20       }}",
                image = slot.image,
                row = slot.row,
                m0 = m(0),
                m1 = m(1),
                m2 = m(2),
                m3 = m(3),
                m4 = m(4),
                m5 = m(5),
            )
            .unwrap();
        }
        store.push_str("    }\n");
    }
    let source = fill_template(
        layout,
        &[
            ("/*WT*/", "vec4<f32>".to_string()),
            ("/*P*/", format!("{}u", v.p)),
            ("/*K*/", format!("{k}u")),
            ("/*ACC*/", acc),
            ("/*BODY*/", body),
            ("/*STORE*/", store),
        ],
    );
    // The weights are fetched from a texture (`crate::gpu::Texels`: vector loads on lavapipe
    // where `wt`, bound too, would be read lane by lane).
    format!(
        "{source}\n@group(0) @binding({TEXEL_BINDING}) var wtex: texture_2d<f32>;\n\
         fn texel(i: u32) -> vec4<f32> {{\n\
         \x20   return textureLoad(wtex, vec2<u32>(i % {TEXEL_ROW}u, i / {TEXEL_ROW}u), 0);\n}}\n"
    )
}

/// G g of every (source channel, destination channel, kernel row) of the correlation the
/// forward kernel runs: [cin, cout rounded up to 8, 3, 6] (zeros past cout); `transposed`:
/// grad_x's, weight (co, ci, ky, kx) at w[ci, co, 2 − ky, 2 − kx]; in a buffer of whole
/// texture rows and in the texture the kernel reads.
fn transformed_weights(
    w: &Tensor,
    cin: usize,
    cout: usize,
    transposed: bool,
) -> Result<(Tensor, Texels)> {
    const TRANSFORM: Kernel = Kernel {
        name: "winograd_weights",
        source: include_str!("../../../shaders/winograd_weights.wgsl"),
        entry: "transform",
    };
    let coutp = cout.next_multiple_of(8);
    let rows = cin * coutp * 3;
    let out = Tensor::empty(w.gpu(), &[texel_floats(rows * 6 / 4)], DType::F32)?;
    let params = [u(cin), u(cout), u(coutp), u32::from(transposed)];
    w.gpu().dispatch(
        &TRANSFORM,
        bytemuck::cast_slice(&params),
        &[w.buf()],
        &[out.buf()],
        groups(rows.div_ceil(64)),
    )?;
    let texels = w.gpu().texels(out.buf(), rows * 6 / 4)?;
    Ok((out, texels))
}

/// One dispatch of `forward` (and of the weights' transform): src [n, cin, h, w] to dst
/// [n, cout, h, w], with `extra` and its mode (1 bias, 2 added at the output's index).
#[allow(clippy::too_many_arguments)]
fn run(
    v: RowsVariant,
    transposed: bool,
    dims @ [_, cin, _, w, cout]: [usize; 5],
    src: &Tensor,
    wt: &Tensor,
    extra: Option<(&Tensor, u32)>,
    dst: &Tensor,
) -> Result<()> {
    check_variant("conv_winograd_rows", v)?;
    let layout = layout_of(w)?;
    let block = Block::of(v, layout, dims[2]);
    let name = match block {
        Block::Rows => format!(
            "conv_winograd_rows_k{}p{}g{}{}",
            v.k,
            v.p,
            layout.g,
            layout.multi()
        ),
        Block::Images { r } => format!(
            "conv_winograd_rows_k{}p{}g{}r{r}{}",
            v.k,
            v.p,
            layout.g,
            layout.multi()
        ),
    };
    let kernel = super::generated(name, "forward", || forward_source(v, layout, block));
    let (uw, texels) = transformed_weights(wt, cin, cout, transposed)?;
    let images = block.images(v);
    dispatch_forward(
        &kernel,
        layout,
        (v, images),
        dims,
        src,
        (&uw, &[&texels]),
        extra,
        dst,
    )
}

/// y = conv2d(x, w) + b for a dense 3×3 convolution with padding 1 and stride 1 (see
/// [`applies`]), on variant `v`.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: RowsVariant,
) -> Result<Tensor> {
    subgroup::require(x.gpu(), "conv_winograd_rows")?;
    let g = geometry(x, w, p, 1)?;
    layout_of(g.w)?;
    super::check_bias("conv_winograd_rows", b, g.cout)?;
    let y = Tensor::empty(x.gpu(), &[g.n, g.cout, g.h, g.w], DType::F32)?;
    let dims = [g.n, g.cin, g.h, g.w, g.cout];
    run(v, false, dims, x, w, b.map(|b| (b, 1)), &y)?;
    Ok(y)
}

/// gx of y = conv2d(x, w) + b given gy, plus `acc` (of x's shape) when given, as the forward
/// correlation of gy with the transposed, flipped kernel (see [`grad_x_applies`]); at stride
/// 2, of gy spread onto x's grid with zeros between (as `subgroup_rows::grad_x`). `x` gives
/// the input's shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: RowsVariant,
) -> Result<Tensor> {
    subgroup::require(x.gpu(), "conv_winograd_rows")?;
    let g = geometry(x, w, p, 2)?;
    layout_of(g.w)?;
    check_gy(&g, gy)?;
    super::check_acc("conv_winograd_rows", acc, x.shape())?;
    let gx = Tensor::empty(x.gpu(), x.shape(), DType::F32)?;
    let dims = [g.n, g.cout, g.h, g.w, g.cin];
    let src = grad_x_source(gy, &g, p.stride)?;
    run(v, true, dims, &src, w, acc.map(|a| (a, 2)), &gx)?;
    Ok(gx)
}
