//! grad_w of dense 3×3 convolutions sharing loads across the 8 lanes of a subgroup
//! (`shaders/conv_subgroup_w.wgsl`), for lavapipe, which loads a storage buffer lane by lane:
//! the x taps of a row come from two loads and subgroup shuffles instead of three gathers,
//! and each x row loaded serves three output rows.
//!
//! Padding 1, stride 1 or 2, no dilation, groups == 1, no bias (the model's 3×3 layers have
//! none). A workgroup of 8 invocations sums KO output channels × CI input channels × 9 taps
//! over a chunk of images; the chunks' partial sums are added in a fixed order, so results
//! are deterministic. Each variant's body is written out unrolled and compiled once per
//! process (`generated`).
//!
//! `examples/conv_subgroup_lab.rs` times the variants against the previous CPU-driver
//! default (`cpu`'s register-blocked grad_w or the split-K GEMM). One run (lavapipe, Mesa
//! 22.3.6, 2 cores shared with other builds, batch 32, fastest of 5), speed-up over that
//! default:
//!
//! | shape            | ko8ci1 | ko4ci2 | ko8ci2 | ko16ci1 | ko4ci4 | ko8ci4 | ko16ci2 | ko8ci8 |
//! |------------------|--------|--------|--------|---------|--------|--------|---------|--------|
//! | 32→32 16²        | 4.1x   | 4.9x   | 5.8x   | 4.8x    | 7.7x   | 7.7x   | 6.9x    | 8.6x   |
//! | 16→16 32²        | 6.4x   | 5.4x   | 6.9x   | 4.8x    | 7.5x   | 11.4x  | 10.4x   | 12.5x  |
//! | 64→64 8²         | 3.9x   | 3.1x   | 4.6x   | 3.4x    | 3.9x   | 4.9x   | 5.2x    | 4.6x   |
//! | 16→32 32² s2     | 3.7x   | 3.3x   | 5.6x   | 4.8x    | 3.5x   | 7.3x   | 8.5x    | 5.8x   |
//! | 32→64 16² s2     | 2.5x   | 1.6x   | 2.3x   | 2.6x    | 2.4x   | 4.3x   | 7.6x    | 2.9x   |
//!
//! A second run on a quiet machine (fastest of 5) had ko8ci8 1.08-1.10x ahead of ko8ci4 on
//! the three stride-1 shapes (6.8-8.5 ms against 7.0-9.4 ms per 151 MFLOP pass).
//!
//! Defaults (`choice`): ko8ci8 at stride 1, ko16ci2 at stride 2.

use super::{check_gy, subgroup, u, Conv2dParams};
use crate::gpu::Kernel;
use crate::tensor::Tensor;
use anyhow::{bail, Result};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("../../../shaders/conv_subgroup_w.wgsl");

/// Block sizes of `grad_w`: `ko` output channels × `ci` input channels per workgroup, and
/// `target` workgroups in all (more chunks of images when the blocks are fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WVariant {
    pub ko: usize,
    pub ci: usize,
    pub target: usize,
}

impl std::fmt::Display for WVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sgw ko{}ci{}", self.ko, self.ci)
    }
}

/// The variants worth timing (`target` 8: four workgroups per thread on 2 cores).
pub const W_VARIANTS: &[WVariant] = &[
    WVariant {
        ko: 8,
        ci: 1,
        target: 8,
    },
    WVariant {
        ko: 4,
        ci: 2,
        target: 8,
    },
    WVariant {
        ko: 8,
        ci: 2,
        target: 8,
    },
    WVariant {
        ko: 16,
        ci: 1,
        target: 8,
    },
    WVariant {
        ko: 4,
        ci: 4,
        target: 8,
    },
    WVariant {
        ko: 8,
        ci: 4,
        target: 8,
    },
    WVariant {
        ko: 16,
        ci: 2,
        target: 8,
    },
    WVariant {
        ko: 8,
        ci: 8,
        target: 8,
    },
];

/// Whether `grad_w` runs this convolution: as [`subgroup::applies`].
pub fn applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup::applies(x, w, p)
}

/// The unrolled WGSL of `grad_w` for `v` at stride `s`.
fn source(v: WVariant, s: usize) -> String {
    let (ko, ci) = (v.ko, v.ci);
    let mut acc = String::new();
    for k in 0..ko {
        for c in 0..ci {
            for ky in 0..3 {
                writeln!(acc, "    var a{k}_{c}_{ky} = vec3<f32>(0.0);").unwrap();
            }
        }
    }
    // Per input channel c: rows a{c} (kernel row 0), b{c} and c{c} of x taps; the plane's
    // offset. Input channels past Cin read the last one (their sums are not stored).
    let mut start = String::new();
    for c in 0..ci {
        writeln!(
            start,
            "            let base{c} = (n * wp.cin + min(ci0 + {c}u, wp.cin - 1u)) * plane;\n\
             \x20           var ra{c} = vec3<f32>(0.0);"
        )
        .unwrap();
        if s == 1 {
            writeln!(
                start,
                "            var rb{c} = taps_s1(base{c}, 0, ox0, lane);\n\
                 \x20           var rc{c} = vec3<f32>(0.0);"
            )
            .unwrap();
        } else {
            writeln!(
                start,
                "            var rb{c} = vec3<f32>(0.0);\n\
                 \x20           var rc{c} = vec3<f32>(0.0);"
            )
            .unwrap();
        }
    }
    let mut row = String::new();
    for k in 0..ko {
        writeln!(
            row,
            "                let g{k} = vec3<f32>(gyat(n, co0 + {k}u, oy, ox));"
        )
        .unwrap();
    }
    for c in 0..ci {
        if s == 1 {
            writeln!(
                row,
                "                rc{c} = taps_s1(base{c}, i32(oy) + 1, ox0, lane);"
            )
            .unwrap();
        } else {
            writeln!(
                row,
                "                rb{c} = taps_s2(base{c}, i32(oy * 2u), ox);\n\
                 \x20               rc{c} = taps_s2(base{c}, i32(oy * 2u) + 1, ox);"
            )
            .unwrap();
        }
    }
    for k in 0..ko {
        for c in 0..ci {
            for (ky, r) in ["ra", "rb", "rc"].iter().enumerate() {
                writeln!(
                    row,
                    "                a{k}_{c}_{ky} = fma(g{k}, {r}{c}, a{k}_{c}_{ky});"
                )
                .unwrap();
            }
        }
    }
    // Slide the window: at stride 1 the next output row's kernel rows are x rows oy, oy + 1,
    // oy + 2 (two kept); at stride 2 they are 2·oy + 1, 2·oy + 2, 2·oy + 3 (one kept).
    for c in 0..ci {
        if s == 1 {
            writeln!(
                row,
                "                ra{c} = rb{c};\n                rb{c} = rc{c};"
            )
            .unwrap();
        } else {
            writeln!(row, "                ra{c} = rc{c};").unwrap();
        }
    }
    let mut store = String::new();
    for k in 0..ko {
        for c in 0..ci {
            for ky in 0..3 {
                writeln!(
                    store,
                    "    let s{k}_{c}_{ky} = subgroupAdd(a{k}_{c}_{ky});\n\
                     \x20   if lane == 0u && co0 + {k}u < wp.cout && ci0 + {c}u < wp.cin {{\n\
                     \x20       let i = wid.z * wp.numel + ((co0 + {k}u) * wp.cin + ci0 + {c}u) * 9u + {}u;\n\
                     \x20       out[i] = s{k}_{c}_{ky}.x;\n\
                     \x20       out[i + 1u] = s{k}_{c}_{ky}.y;\n\
                     \x20       out[i + 2u] = s{k}_{c}_{ky}.z;\n\
                     \x20   }}",
                    3 * ky
                )
                .unwrap();
            }
        }
    }
    TEMPLATE
        .replace("/*KO*/", &format!("{ko}u"))
        .replace("/*CI*/", &format!("{ci}u"))
        .replace("/*ACC*/\n", &acc)
        .replace("/*START*/\n", &start)
        .replace("/*ROW*/\n", &row)
        .replace("/*STORE*/\n", &store)
}

/// The kernel of `v` at stride `s`.
fn kernel(v: WVariant, s: usize) -> Result<Kernel> {
    if v.ko == 0 || v.ci == 0 || v.ko * v.ci > 64 {
        bail!("conv_subgroup grad_w: variant {v} needs 1 <= ko·ci <= 64");
    }
    let name = format!("conv_subgroup_w_ko{}ci{}s{s}", v.ko, v.ci);
    Ok(super::generated(name, "grad_w", || source(v, s)))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct WP {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    tiles_x: u32,
    per_chunk: u32,
    numel: u32,
    pad: [u32; 2],
}

/// gw [Cout, Cin, 3, 3] of y = conv2d(x, w) given gy, for a dense 3×3 convolution with
/// padding 1 and stride 1 or 2 (see [`applies`]), on variant `v`.
pub fn grad_w(x: &Tensor, w: &Tensor, gy: &Tensor, p: Conv2dParams, v: WVariant) -> Result<Tensor> {
    let gpu = x.gpu();
    subgroup::require(gpu, "conv_subgroup grad_w")?;
    if !applies(x, w, p) {
        bail!(
            "conv_subgroup grad_w: only dense 3x3 convolutions with padding 1, dilation 1 and \
             stride 1 or 2, got weights {:?} and {p:?}",
            w.shape()
        );
    }
    let g = super::geometry(x, w, p)?;
    check_gy(&g, gy)?;
    let kernel = kernel(v, p.stride)?;
    let blocks = [g.cin.div_ceil(v.ci), g.cout.div_ceil(v.ko)];
    super::chunked_grad_w(
        w,
        g.n,
        blocks[0] * blocks[1],
        v.target,
        |per_chunk, chunks, out| {
            let pr = WP {
                n: u(g.n),
                cin: u(g.cin),
                h: u(g.h),
                w: u(g.w),
                cout: u(g.cout),
                ho: u(g.ho),
                wo: u(g.wo),
                tiles_x: u(g.wo.div_ceil(8)),
                per_chunk: u(per_chunk),
                numel: u(w.numel()),
                pad: [0; 2],
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
