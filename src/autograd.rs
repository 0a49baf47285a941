//! Reverse-mode automatic differentiation. Every op on [`Var`]s records its parents and a
//! backward closure (the tape is the graph reachable from the loss); [`backward`] walks it
//! in reverse topological order and accumulates gradients into the leaves that want them.
//! Inside [`no_grad`] nothing is recorded, so inference keeps no activations alive.

use crate::ops::batch::{slice_batch_forward, stack_batch_forward};
use crate::ops::elementwise::{add_into, add_tensors};
use crate::tensor::Tensor;
use anyhow::{bail, Result};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// Given the gradient of the output, the gradients of the parents (None where a parent
/// needs none).
pub type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>>>;

/// A backward that can also sum in what its parents' gradients hold so far (from their
/// other consumers, whose backwards ran first): `acc[i]` holds parent i's; a closure that
/// takes it (`acc[i].take()`) returns parent i's gradient with it included. Kernels that
/// store each element of a gradient once add it there, which saves the separate sum's launch
/// and its pass over three tensors.
pub type AccumulatingBackwardFn =
    Box<dyn Fn(&Tensor, &mut [Option<Tensor>]) -> Result<Vec<Option<Tensor>>>>;

enum Backward {
    Plain(BackwardFn),
    Accumulating(AccumulatingBackwardFn),
}

/// A Var's place in the graph. Children keep their parents' nodes, not their values: an
/// intermediate tensor lives only as long as a Var handle or a backward closure that needs it
/// (as PyTorch's saved tensors), so the graph alone keeps no activation alive.
struct Node {
    id: u64,
    shape: Vec<usize>,
    requires_grad: bool,
    grad: RefCell<Option<Tensor>>,
    /// Where a parameter's gradient is copied after the backward it first arrives in (a view
    /// into its parameter block's gradient buffer, see `ParamStore`); other leaves keep the
    /// gradient tensor they are given.
    grad_home: Option<Tensor>,
    parents: Vec<Rc<Node>>,
    /// Taken when it runs: its saved tensors are freed as soon as the backward pass is done
    /// with them (a graph back-propagates once, as PyTorch's without retain_graph).
    backward: RefCell<Option<Backward>>,
    op: &'static str,
}

/// A tensor in the autograd graph: its value and its node.
#[derive(Clone)]
pub struct Var {
    node: Rc<Node>,
    value: Tensor,
}

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static RECOMPUTING: Cell<bool> = const { Cell::new(false) };
}

fn next_id() -> u64 {
    NEXT_ID.with(|c| {
        let v = c.get();
        c.set(v + 1);
        v
    })
}

/// Whether ops record their backward now.
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Runs `f` with recording off (inference); restores the previous mode afterwards.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    with_grad(false, f)
}

/// Runs `f` with recording on, also inside [`no_grad`] (a backward that an inference-side
/// caller asks for: an explanation's); restores the previous mode afterwards.
pub fn enable_grad<T>(f: impl FnOnce() -> T) -> T {
    with_grad(true, f)
}

fn with_grad<T>(on: bool, f: impl FnOnce() -> T) -> T {
    let before = GRAD_ENABLED.with(|g| g.replace(on));
    let out = f();
    GRAD_ENABLED.with(|g| g.set(before));
    out
}

/// Whether a [`checkpoint`]ed function is being run again for its backward: layers skip
/// their side effects (running statistics) then, which the first run already had.
pub fn recomputing() -> bool {
    RECOMPUTING.with(Cell::get)
}

/// A function of Vars that [`checkpoint`] can run twice, given its inputs and the number of
/// independent batches they stack along N.
pub type CheckpointFn = Rc<dyn Fn(&[Var], usize) -> Result<Var>>;

/// Gradient checkpointing: runs `f(inputs)` without recording, so none of its intermediate
/// activations stay alive; its backward runs `f` again with recording (and [`recomputing`]
/// set) and back-propagates through that copy. Only the inputs are kept between forward and
/// backward, at the price of one more forward pass of `f`.
///
/// When the inputs stack `batches` independent batches along N (`f` treats each on its own,
/// as a block over the BBN branches with per-branch batch statistics), the backward
/// recomputes and back-propagates one batch at a time, so only one batch's graph of `f` is
/// ever alive.
pub fn checkpoint(
    op: &'static str,
    inputs: &[&Var],
    batches: usize,
    f: CheckpointFn,
) -> Result<Var> {
    let owned: Vec<Var> = inputs.iter().map(|&v| v.clone()).collect();
    if !grad_enabled() {
        return f(&owned, batches);
    }
    let out = no_grad(|| f(&owned, batches))?;
    let saved: Vec<(Tensor, bool)> = owned
        .iter()
        .map(|v| (v.value().clone(), v.requires_grad()))
        .collect();
    Ok(Var::from_op(
        op,
        out.value().clone(),
        inputs,
        Box::new(move |g| {
            let part = |t: &Tensor, k: usize| -> Result<Tensor> {
                if batches == 1 {
                    return Ok(t.clone());
                }
                let n = t.shape()[0] / batches;
                slice_batch_forward(t, k * n, n)
            };
            let mut grads: Vec<Vec<Tensor>> = vec![Vec::new(); saved.len()];
            for k in 0..batches {
                let fresh: Vec<Var> = saved
                    .iter()
                    .map(|(t, rg)| Ok(Var::leaf(part(t, k)?, *rg, None)))
                    .collect::<Result<_>>()?;
                let before = RECOMPUTING.with(|r| r.replace(true));
                let y = f(&fresh, 1);
                RECOMPUTING.with(|r| r.set(before));
                let y = y?;
                if y.requires_grad() {
                    backward_seeded(&y, part(g, k)?)?;
                }
                for (acc, v) in grads.iter_mut().zip(&fresh) {
                    acc.extend(v.grad());
                }
            }
            grads
                .into_iter()
                .map(|parts| match parts.len() {
                    0 => Ok(None),
                    1 => Ok(parts.into_iter().next()),
                    _ => stack_batch_forward(&parts.iter().collect::<Vec<_>>()).map(Some),
                })
                .collect()
        }),
    ))
}

impl Var {
    /// A leaf that collects a gradient (a parameter).
    pub fn param(value: Tensor) -> Var {
        Var::leaf(value, true, None)
    }

    /// A parameter whose gradient is written into `grad_home` (same shape), which keeps it
    /// between steps: a later backward overwrites it once the gradient was cleared.
    pub fn param_with_grad_home(value: Tensor, grad_home: Tensor) -> Result<Var> {
        if grad_home.shape() != value.shape() {
            bail!(
                "a parameter of shape {:?} with a gradient buffer of shape {:?}",
                value.shape(),
                grad_home.shape()
            );
        }
        Ok(Var::leaf(value, true, Some(grad_home)))
    }

    /// A leaf without gradient (an input).
    pub fn constant(value: Tensor) -> Var {
        Var::leaf(value, false, None)
    }

    fn leaf(value: Tensor, requires_grad: bool, grad_home: Option<Tensor>) -> Var {
        Var {
            node: Rc::new(Node {
                id: next_id(),
                shape: value.shape().to_vec(),
                requires_grad,
                grad: RefCell::new(None),
                grad_home,
                parents: Vec::new(),
                backward: RefCell::new(None),
                op: "leaf",
            }),
            value,
        }
    }

    /// The result of op `op` on `parents`. The backward closure is kept only when recording
    /// is on and some parent needs a gradient.
    pub fn from_op(op: &'static str, value: Tensor, parents: &[&Var], backward: BackwardFn) -> Var {
        Var::with_backward(op, value, parents, Backward::Plain(backward))
    }

    /// [`Var::from_op`] with a backward that sums in the parents' gradients so far.
    pub fn from_op_accumulating(
        op: &'static str,
        value: Tensor,
        parents: &[&Var],
        backward: AccumulatingBackwardFn,
    ) -> Var {
        Var::with_backward(op, value, parents, Backward::Accumulating(backward))
    }

    fn with_backward(op: &'static str, value: Tensor, parents: &[&Var], backward: Backward) -> Var {
        let needs = grad_enabled() && parents.iter().any(|p| p.requires_grad());
        Var {
            node: Rc::new(Node {
                id: next_id(),
                shape: value.shape().to_vec(),
                requires_grad: needs,
                grad: RefCell::new(None),
                grad_home: None,
                parents: if needs {
                    parents.iter().map(|p| p.node.clone()).collect()
                } else {
                    Vec::new()
                },
                backward: RefCell::new(needs.then_some(backward)),
                op,
            }),
            value,
        }
    }

    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn requires_grad(&self) -> bool {
        self.node.requires_grad
    }

    /// The accumulated gradient of a leaf.
    pub fn grad(&self) -> Option<Tensor> {
        self.node.grad.borrow().clone()
    }

    /// Whether the gradient is in the buffer given by [`Var::param_with_grad_home`] (it is
    /// after a backward, unless [`Var::set_grad`] put another tensor there).
    pub fn grad_at_home(&self) -> bool {
        match (&*self.node.grad.borrow(), &self.node.grad_home) {
            (Some(g), Some(home)) => g.same_buffer(home),
            _ => false,
        }
    }

    pub fn set_grad(&self, g: Option<Tensor>) {
        *self.node.grad.borrow_mut() = g;
    }

    pub fn op(&self) -> &'static str {
        self.node.op
    }
}

/// Back-propagates from the scalar `loss`, adding d loss / d leaf into every leaf's grad.
pub fn backward(loss: &Var) -> Result<()> {
    if loss.value().numel() != 1 {
        bail!(
            "backward() needs a scalar loss, got shape {:?}",
            loss.shape()
        );
    }
    if !loss.requires_grad() {
        bail!("backward() on a value that depends on no parameter");
    }
    let one = Tensor::from_f32(loss.value().gpu(), &[1.0], loss.shape())?;
    backward_seeded(loss, one)
}

/// Adds `g` into the gradient held for node `id`.
fn accumulate(grads: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) -> Result<()> {
    let sum = match grads.remove(&id) {
        // Out of place: a backward may hand the same tensor to two parents.
        Some(acc) => add_tensors(&acc, &g)?,
        None => g,
    };
    grads.insert(id, sum);
    Ok(())
}

/// Back-propagates `seed` = d L / d `root` (the shape of `root`) into the leaves.
fn backward_seeded(root: &Var, seed: Tensor) -> Result<()> {
    // Reverse topological order by an explicit depth-first search (no recursion limit).
    let mut order: Vec<Rc<Node>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(root.node.clone(), false)];
    while let Some((v, done)) = stack.pop() {
        if done {
            order.push(v);
            continue;
        }
        if !seen.insert(v.id) {
            continue;
        }
        stack.push((v.clone(), true));
        for p in &v.parents {
            if p.requires_grad && !seen.contains(&p.id) {
                stack.push((p.clone(), false));
            }
        }
    }
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    grads.insert(root.node.id, seed);
    // Parameters that got their first gradient: it is copied to their home after the walk,
    // where consecutive copies share one break between compute passes instead of one each
    // among the kernels. Until then the leaf holds the gradient itself, so that a nested
    // backward (a checkpoint's) adding to it meanwhile is not overwritten by the copy.
    let mut to_home: Vec<Rc<Node>> = Vec::new();
    for v in order.iter().rev() {
        let Some(g) = grads.remove(&v.id) else {
            continue;
        };
        if !v.parents.is_empty() {
            let Some(f) = v.backward.borrow_mut().take() else {
                bail!(
                    "backward through op {} a second time: the first backward freed the \
                     tensors it saved",
                    v.op
                );
            };
            let (pg, left) = match &f {
                Backward::Plain(f) => (f(&g)?, vec![None; v.parents.len()]),
                Backward::Accumulating(f) => {
                    // A parent listed twice gets what it holds at its first place.
                    let mut acc: Vec<Option<Tensor>> =
                        v.parents.iter().map(|p| grads.remove(&p.id)).collect();
                    let pg = f(&g, &mut acc)?;
                    (pg, acc)
                }
            };
            drop(f);
            // A closure may leave out trailing parents; what they held so far stays.
            let pg = pg.into_iter().chain(std::iter::repeat(None));
            for ((p, pg), left) in v.parents.iter().zip(pg).zip(left) {
                if let Some(left) = left {
                    accumulate(&mut grads, p.id, left)?;
                }
                let Some(pg) = pg else { continue };
                if !p.requires_grad {
                    continue;
                }
                if pg.shape() != p.shape {
                    bail!(
                        "op {} produced a gradient of shape {:?} for an input of shape {:?}",
                        v.op,
                        pg.shape(),
                        p.shape
                    );
                }
                accumulate(&mut grads, p.id, pg)?;
            }
        } else {
            let mut slot = v.grad.borrow_mut();
            let sum = match (slot.take(), &v.grad_home) {
                (Some(acc), Some(home)) if acc.same_buffer(home) => {
                    add_into(&acc, &g)?;
                    acc
                }
                // Out of place: g may be another leaf's gradient too (add hands one tensor to
                // both operands), so no leaf's gradient is ever written in place but at home.
                (Some(acc), _) => add_tensors(&acc, &g)?,
                (None, Some(_)) => {
                    to_home.push(v.clone());
                    g
                }
                (None, None) => g,
            };
            *slot = Some(sum);
        }
    }
    for v in to_home {
        let mut slot = v.grad.borrow_mut();
        if let (Some(g), Some(home)) = (slot.as_ref(), &v.grad_home) {
            if !g.same_buffer(home) {
                home.assign(g)?;
                *slot = Some(home.clone());
            }
        }
    }
    Ok(())
}
