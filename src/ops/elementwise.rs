//! Elementwise ops: add/sub/mul/div with broadcasting (per channel, per sample, scalar;
//! `shaders/elementwise.wgsl`), and the same-shape maps (`elementwise_map.wgsl`): relu(a + b)
//! and relu(a·b + c) in one pass (the residual joins of a basic block, the second with the LSK
//! module's product), relu, sigmoid, exp, log and scale, forward and backward.

use super::reduce::sum_to;
use super::FourWide;
use crate::autograd::Var;
use crate::gpu::{grid, GpuBuffer, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{anyhow, bail, Result};
use std::sync::LazyLock;

const SRC: &str = include_str!("../../shaders/elementwise.wgsl");
const BINARY: Kernel = Kernel {
    name: "elementwise",
    source: SRC,
    entry: "binary",
};
const MAP_SRC: &str = include_str!("../../shaders/elementwise_map.wgsl");
static MAP_SRC_VEC4: LazyLock<String> =
    LazyLock::new(|| MAP_SRC.replace("alias V = f32;", "alias V = vec4<f32>;"));
static MAPS: FourWide = FourWide {
    name: "elementwise_map",
    source: MAP_SRC,
    name4: "elementwise_map_vec4",
    source4: &MAP_SRC_VEC4,
};

/// Runs the same-shape map `entry` of `elementwise_map.wgsl` over `n` values, four per
/// invocation on a CPU driver where it can ([`FourWide`]).
fn dispatch_map(
    like: &Tensor,
    entry: &'static str,
    mut p: Params,
    n: usize,
    reads: &[&GpuBuffer],
    writes: &[&GpuBuffer],
) -> Result<()> {
    let (k, per) = MAPS.kernel(like, n, entry);
    p.n = (n / per) as u32;
    like.gpu()
        .dispatch(&k, bytemuck::bytes_of(&p), reads, writes, grid(n / per))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    op: u32,
    k: f32,
    pad: u32,
    d: [u32; 4],
    sa: [u32; 4],
    sb: [u32; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    /// relu(a + b).
    AddRelu = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Relu = 0,
    Sigmoid = 1,
    Exp = 2,
    Log = 3,
    Scale = 4,
}

/// `shape` left-padded with ones to rank 4.
pub fn rank4(shape: &[usize]) -> Result<[usize; 4]> {
    if shape.len() > 4 {
        bail!("elementwise ops support rank <= 4, got shape {shape:?}");
    }
    let mut d = [1; 4];
    d[4 - shape.len()..].copy_from_slice(shape);
    Ok(d)
}

/// The broadcast shape of `a` and `b` (NumPy rules, rank <= 4).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let (pa, pb) = (rank4(a)?, rank4(b)?);
    let mut out = Vec::with_capacity(r);
    for i in 4 - r..4 {
        out.push(match (pa[i], pb[i]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
        });
    }
    Ok(out)
}

/// Strides of a contiguous tensor of `shape` seen at the rank-4 `out` shape (0 where
/// broadcast).
fn strides(shape: &[usize]) -> Result<[u32; 4]> {
    let d = rank4(shape)?;
    let mut s = [0u32; 4];
    let mut acc = 1usize;
    for i in (0..4).rev() {
        s[i] = if d[i] == 1 { 0 } else { acc as u32 };
        acc *= d[i];
    }
    Ok(s)
}

fn check_f32(t: &Tensor, what: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        bail!("{what}: expected an f32 tensor, got {:?}", t.dtype());
    }
    Ok(())
}

/// y = a op b with broadcasting.
pub fn binary_forward(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    check_f32(a, "binary op input a")?;
    check_f32(b, "binary op input b")?;
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let y = Tensor::empty(a.gpu(), &shape, DType::F32)?;
    // On a CPU driver, without broadcasting, four values per invocation (dispatch_map);
    // on a GPU the broadcasting kernel serves every shape, as measured there.
    let n = y.numel();
    let same = a.shape() == shape.as_slice() && b.shape() == shape.as_slice();
    if a.gpu().cpu_threads().is_some() && same && n.is_multiple_of(4) {
        let p = Params {
            op: op as u32,
            ..Default::default()
        };
        dispatch_map(a, "binary_same", p, n, &[a.buf(), b.buf()], &[y.buf()])?;
        return Ok(y);
    }
    let d = rank4(&shape)?;
    let p = Params {
        n: y.numel() as u32,
        op: op as u32,
        d: d.map(|v| v as u32),
        sa: strides(a.shape())?,
        sb: strides(b.shape())?,
        ..Default::default()
    };
    a.gpu().dispatch(
        &BINARY,
        bytemuck::bytes_of(&p),
        &[a.buf(), b.buf()],
        &[y.buf()],
        grid(y.numel()),
    )?;
    Ok(y)
}

/// Gradients of y = a op b given gy, each summed back to its input's shape.
pub fn binary_backward(
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    gy: &Tensor,
    op: BinaryOp,
) -> Result<(Tensor, Tensor)> {
    binary_grads([a.shape(), b.shape()], [Some(a), Some(b), Some(y)], gy, op)
}

impl BinaryOp {
    /// Which of (a, b, y) the backward reads besides gy: the operands of mul, b and y of
    /// div; add and sub only need the shapes, so an autograd node keeps nothing alive.
    fn saved(self) -> [bool; 3] {
        match self {
            BinaryOp::Add | BinaryOp::Sub => [false; 3],
            BinaryOp::Mul => [true, true, false],
            BinaryOp::Div => [false, true, true],
            BinaryOp::AddRelu => [false, false, true],
        }
    }
}

/// [`binary_backward`] from the input shapes and the tensors [`BinaryOp::saved`] names.
fn binary_grads<'a>(
    shapes: [&[usize]; 2],
    [a, b, y]: [Option<&'a Tensor>; 3],
    gy: &Tensor,
    op: BinaryOp,
) -> Result<(Tensor, Tensor)> {
    let need = |t: Option<&'a Tensor>, what: &str| -> Result<&'a Tensor> {
        t.ok_or_else(|| anyhow!("{op:?} backward: its forward did not keep {what}"))
    };
    let (ga, gb) = match op {
        BinaryOp::Add => (gy.clone(), gy.clone()),
        BinaryOp::Sub => (gy.clone(), unary_forward(gy, UnaryOp::Scale, -1.0)?),
        BinaryOp::Mul => {
            let (a, b) = (need(a, "a")?, need(b, "b")?);
            if a.shape() == gy.shape() && b.shape() == gy.shape() {
                return mul_backward(a, b, gy);
            }
            (
                binary_forward(gy, b, BinaryOp::Mul)?,
                binary_forward(gy, a, BinaryOp::Mul)?,
            )
        }
        BinaryOp::Div => {
            // d(a/b)/db = -(a/b)/b = -y/b
            let b = need(b, "b")?;
            let t = binary_forward(gy, need(y, "y")?, BinaryOp::Mul)?;
            let t = binary_forward(&t, b, BinaryOp::Div)?;
            (
                binary_forward(gy, b, BinaryOp::Div)?,
                unary_forward(&t, UnaryOp::Scale, -1.0)?,
            )
        }
        BinaryOp::AddRelu => {
            let g = unary_backward(y, gy, UnaryOp::Relu, 0.0)?;
            (g.clone(), g)
        }
    };
    Ok((sum_to(&ga, shapes[0])?, sum_to(&gb, shapes[1])?))
}

/// (gy·b, gy·a) for same-shape a, b and gy, in one pass over gy.
fn mul_backward(a: &Tensor, b: &Tensor, gy: &Tensor) -> Result<(Tensor, Tensor)> {
    let ga = Tensor::empty(gy.gpu(), gy.shape(), DType::F32)?;
    let gb = Tensor::empty(gy.gpu(), gy.shape(), DType::F32)?;
    dispatch_map(
        gy,
        "mul_backward",
        Params::default(),
        gy.numel(),
        &[a.buf(), b.buf(), gy.buf()],
        &[ga.buf(), gb.buf()],
    )?;
    Ok((ga, gb))
}

/// out = f(x); `k` is the factor of `Scale`.
pub fn unary_forward(x: &Tensor, op: UnaryOp, k: f32) -> Result<Tensor> {
    check_f32(x, "unary op input")?;
    let y = Tensor::empty(x.gpu(), x.shape(), DType::F32)?;
    let p = Params {
        op: op as u32,
        k,
        ..Default::default()
    };
    dispatch_map(x, "unary", p, x.numel(), &[x.buf()], &[y.buf()])?;
    Ok(y)
}

impl UnaryOp {
    /// The tensor the backward reads besides gy: the input x for log, nothing for scale,
    /// else the output y (relu's derivative is y > 0, which holds exactly where x > 0).
    /// Keeping the output, which the next op usually keeps too, frees the input.
    pub fn saved<'a>(self, x: &'a Tensor, y: &'a Tensor) -> Option<&'a Tensor> {
        match self {
            UnaryOp::Log => Some(x),
            UnaryOp::Scale => None,
            _ => Some(y),
        }
    }
}

/// gx for y = f(x), from `saved` = [`UnaryOp::saved`].
pub fn unary_backward(saved: Option<&Tensor>, gy: &Tensor, op: UnaryOp, k: f32) -> Result<Tensor> {
    let need = || saved.ok_or_else(|| anyhow!("{op:?} backward: its forward kept nothing"));
    let code = match op {
        UnaryOp::Scale => return unary_forward(gy, UnaryOp::Scale, k),
        UnaryOp::Exp => return binary_forward(gy, need()?, BinaryOp::Mul),
        UnaryOp::Log => return binary_forward(gy, need()?, BinaryOp::Div),
        UnaryOp::Relu => 0,
        UnaryOp::Sigmoid => 1,
    };
    let saved = need()?;
    let gx = Tensor::empty(gy.gpu(), gy.shape(), DType::F32)?;
    let p = Params {
        op: code,
        ..Default::default()
    };
    dispatch_map(
        gy,
        "unary_backward",
        p,
        gy.numel(),
        &[saved.buf(), gy.buf()],
        &[gx.buf()],
    )?;
    Ok(gx)
}

/// acc += g, in place (same shapes).
pub fn add_into(acc: &Tensor, g: &Tensor) -> Result<()> {
    if acc.shape() != g.shape() {
        bail!("accumulate {:?} into {:?}", g.shape(), acc.shape());
    }
    dispatch_map(
        acc,
        "accumulate",
        Params::default(),
        acc.numel(),
        &[g.buf()],
        &[acc.buf()],
    )
}

/// a + b as a new tensor.
pub fn add_tensors(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_forward(a, b, BinaryOp::Add)
}

fn binary(a: &Var, b: &Var, op: BinaryOp, name: &'static str) -> Result<Var> {
    let y = binary_forward(a.value(), b.value(), op)?;
    let (keep, all) = (op.saved(), [a.value(), b.value(), &y]);
    let kept: [Option<Tensor>; 3] = std::array::from_fn(|i| keep[i].then(|| all[i].clone()));
    let shapes = [a.shape().to_vec(), b.shape().to_vec()];
    Ok(Var::from_op(
        name,
        y,
        &[a, b],
        Box::new(move |gy| {
            let (ga, gb) = binary_grads(
                [&shapes[0], &shapes[1]],
                [kept[0].as_ref(), kept[1].as_ref(), kept[2].as_ref()],
                gy,
                op,
            )?;
            Ok(vec![Some(ga), Some(gb)])
        }),
    ))
}

pub fn add(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Add, "add")
}

pub fn sub(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Sub, "sub")
}

pub fn mul(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Mul, "mul")
}

pub fn div(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::Div, "div")
}

/// relu(a + b) as one op: one pass, and no tensor for the sum.
pub fn add_relu(a: &Var, b: &Var) -> Result<Var> {
    binary(a, b, BinaryOp::AddRelu, "add_relu")
}

/// The operands of relu(a·b + c): f32 tensors of one shape.
fn check_join(a: &Tensor, b: &Tensor, c: &Tensor) -> Result<()> {
    for (t, what) in [(a, "a"), (b, "b"), (c, "c")] {
        check_f32(t, &format!("mul_add_relu input {what}"))?;
        if t.shape() != a.shape() {
            bail!(
                "mul_add_relu: input {what} has shape {:?}, expected a's {:?} (no broadcasting)",
                t.shape(),
                a.shape()
            );
        }
    }
    Ok(())
}

/// y = relu(a·b + c), same shapes, in one pass.
pub fn mul_add_relu_forward(a: &Tensor, b: &Tensor, c: &Tensor) -> Result<Tensor> {
    check_join(a, b, c)?;
    let y = Tensor::empty(a.gpu(), a.shape(), DType::F32)?;
    dispatch_map(
        a,
        "mul_add_relu",
        Params::default(),
        y.numel(),
        &[a.buf(), b.buf(), c.buf()],
        &[y.buf()],
    )?;
    Ok(y)
}

/// (ga, gb, gc) of y = relu(a·b + c) from its output y and gy, in one pass:
/// m = gy·[y > 0], ga = m·b, gb = m·a, gc = m.
pub fn mul_add_relu_backward(
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    check_join(a, b, y)?;
    check_join(a, b, gy)?;
    let g = || Tensor::empty(gy.gpu(), gy.shape(), DType::F32);
    let (ga, gb, gc) = (g()?, g()?, g()?);
    dispatch_map(
        gy,
        "mul_add_relu_backward",
        Params::default(),
        gy.numel(),
        &[a.buf(), b.buf(), y.buf(), gy.buf()],
        &[ga.buf(), gb.buf(), gc.buf()],
    )?;
    Ok((ga, gb, gc))
}

/// relu(a·b + c) as one op (the end of an LSK basic block: the module's x·attention joined
/// with the shortcut): one pass each way, and neither the product nor the sum as a tensor.
pub fn mul_add_relu(a: &Var, b: &Var, c: &Var) -> Result<Var> {
    let y = mul_add_relu_forward(a.value(), b.value(), c.value())?;
    let (ta, tb, ty) = (a.value().clone(), b.value().clone(), y.clone());
    Ok(Var::from_op(
        "mul_add_relu",
        y,
        &[a, b, c],
        Box::new(move |gy| {
            let (ga, gb, gc) = mul_add_relu_backward(&ta, &tb, &ty, gy)?;
            Ok(vec![Some(ga), Some(gb), Some(gc)])
        }),
    ))
}

fn unary(x: &Var, op: UnaryOp, k: f32, name: &'static str) -> Result<Var> {
    let y = unary_forward(x.value(), op, k)?;
    let saved = op.saved(x.value(), &y).cloned();
    Ok(Var::from_op(
        name,
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(unary_backward(saved.as_ref(), gy, op, k)?)])),
    ))
}

pub fn relu(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Relu, 0.0, "relu")
}

pub fn sigmoid(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Sigmoid, 0.0, "sigmoid")
}

pub fn exp(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Exp, 0.0, "exp")
}

pub fn log(x: &Var) -> Result<Var> {
    unary(x, UnaryOp::Log, 0.0, "log")
}

pub fn scale(x: &Var, k: f32) -> Result<Var> {
    unary(x, UnaryOp::Scale, k, "scale")
}
