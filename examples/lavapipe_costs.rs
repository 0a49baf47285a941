//! What a shader operation costs on this adapter, for choosing kernel shapes on CPU drivers:
//! each probe is a loop of 8192 iterations in workgroups of 8 invocations (one subgroup), and
//! the report is ns per iteration of one workgroup on one core (the adapter's threads taken
//! as the machine's cores). `empty` is the loop alone; subtract it from the others.
//!
//! On lavapipe (Mesa 22.3.6, LLVM 15, 256-bit, 2-core Xeon, two runs): the loop 5.6-5.9 ns;
//! an f32 load at a per-lane index 18-30 ns, at a uniform index 18-27 ns, a vec4 load 37-54
//! ns (all four values), a store 22-39 ns, a workgroup-memory load 12-21 ns; 8 independent
//! FMAs 9-11 ns; a subgroup shuffle or broadcast about 0 past the loop; 256 FMAs into 256
//! accumulators the compiler must keep in memory 176-295 ns. So a kernel for lavapipe wants
//! few loads, each of as many values as a vec4 holds, and many FMAs per load.
//!
//! `cargo run --release --example lavapipe_costs`

use anyhow::Result;
use lskbb::gpu::Kernel;
use lskbb::{AdapterChoice, Gpu, Tensor};
use std::time::Instant;

const ITERS: u32 = 8192;
const GROUPS: u32 = 256;

const HEADER: &str = "
var<workgroup> sh: array<f32, 256>;
struct P { iters: u32, mask: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
";

/// The probes: name and loop body (acc0..acc7 f32 accumulators, b0 and c0 constants the
/// compiler cannot fold, i the iteration, lane the subgroup lane).
const PROBES: &[(&str, &str)] = &[
    ("empty", "acc0 += b0;"),
    ("lane_load", "acc0 += xs[(i * 8u + lane) & p.mask];"),
    ("uniform_load", "acc0 += xs[(i + wid.x) & p.mask];"),
    (
        "vec4_load",
        "let v = x4[(i * 8u + lane) & (p.mask / 4u)]; acc0 += v.x; acc1 += v.y; acc2 += v.z; \
         acc3 += v.w;",
    ),
    ("shared_load", "acc0 += sh[(i * 8u + lane) & 255u];"),
    ("store", "out[(i * 8u + lane) & p.mask] = acc0; acc0 += b0;"),
    (
        "fma8",
        "acc0 = fma(acc0, b0, c0); acc1 = fma(acc1, b0, c0); acc2 = fma(acc2, b0, c0); \
         acc3 = fma(acc3, b0, c0); acc4 = fma(acc4, b0, c0); acc5 = fma(acc5, b0, c0); \
         acc6 = fma(acc6, b0, c0); acc7 = fma(acc7, b0, c0);",
    ),
    (
        "shuffle_down",
        "acc0 = subgroupShuffleDown(acc0, 1u) * b0 + c0;",
    ),
    ("broadcast", "acc0 = subgroupBroadcast(acc0, 3u) * b0 + c0;"),
    ("fma_256_accumulators", ""),
];

/// The WGSL of probe `name` with loop body `body`; `fma_256_accumulators` writes its own.
fn source(name: &str, body: &str) -> String {
    let wide = name == "fma_256_accumulators";
    let (decl, body, sum) = if wide {
        let each = |f: &dyn Fn(usize) -> String| (0..256).map(f).collect::<Vec<_>>().join("\n");
        (
            each(&|k| format!("var s{k} = f32(lane + {k}u);")),
            each(&|k| format!("s{k} = fma(s{k}, b0, c0);")),
            each(&|k| format!("acc0 += s{k};")),
        )
    } else {
        (String::new(), body.to_string(), String::new())
    };
    format!(
        "{HEADER}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {{
    var acc0 = f32(lane); var acc1 = 0.0; var acc2 = 0.0; var acc3 = 0.0;
    var acc4 = 0.0; var acc5 = 0.0; var acc6 = 0.0; var acc7 = 0.0;
    let b0 = f32(p.a) * 1e-9 + 0.5;
    let c0 = f32(p.b) * 1e-9;
    {decl}
    for (var i = 0u; i < p.iters; i++) {{
        {body}
    }}
    {sum}
    out[wid.x * 8u + lane] = acc0 + acc1 + acc2 + acc3 + acc4 + acc5 + acc6 + acc7;
}}"
    )
}

fn main() -> Result<()> {
    let gpu = Gpu::new(&AdapterChoice::default())?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    println!(
        "{} — ns per loop iteration of a workgroup, per core",
        gpu.describe()
    );
    let len = 1usize << 16;
    let xs = Tensor::from_f32(&gpu, &vec![1.0; len], &[len])?;
    let out = Tensor::from_f32(&gpu, &vec![0.0; len], &[len])?;
    for &(name, body) in PROBES {
        let kernel = Kernel {
            name,
            source: Box::leak(source(name, body).into_boxed_str()),
            entry: "main",
        };
        // The 256-accumulator probe runs 256 FMAs per iteration: fewer iterations.
        let iters = if body.is_empty() { ITERS / 32 } else { ITERS };
        let params: [u32; 4] = [iters, (len - 1) as u32, 1, 2];
        let run = || -> Result<f64> {
            let start = Instant::now();
            gpu.dispatch(
                &kernel,
                bytemuck::cast_slice(&params),
                &[xs.buf(), xs.buf()],
                &[out.buf()],
                [GROUPS, 1, 1],
            )?;
            gpu.finish()?;
            Ok(start.elapsed().as_secs_f64())
        };
        run()?;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            best = best.min(run()?);
        }
        let per = best * cores / f64::from(GROUPS * iters) * 1e9;
        println!("  {name:<22} {per:8.2} ns");
    }
    Ok(())
}
