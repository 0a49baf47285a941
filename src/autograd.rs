//! Reverse-mode automatic differentiation. Every op on [`Var`]s records its parents and a
//! backward closure (the tape is the graph reachable from the loss); [`backward`] walks it
//! in reverse topological order and accumulates gradients into the leaves that want them.
//! Inside [`no_grad`] nothing is recorded, so inference keeps no activations alive.

use crate::ops::elementwise::{add_into, add_tensors};
use crate::tensor::Tensor;
use anyhow::{bail, Result};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// Given the gradient of the output, the gradients of the parents (None where a parent
/// needs none).
pub type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    id: u64,
    value: Tensor,
    requires_grad: bool,
    grad: RefCell<Option<Tensor>>,
    parents: Vec<Var>,
    backward: Option<BackwardFn>,
    op: &'static str,
}

/// A tensor in the autograd graph.
#[derive(Clone)]
pub struct Var(Rc<Node>);

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
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
    let before = GRAD_ENABLED.with(|g| g.replace(false));
    let out = f();
    GRAD_ENABLED.with(|g| g.set(before));
    out
}

impl Var {
    /// A leaf that collects a gradient (a parameter).
    pub fn param(value: Tensor) -> Var {
        Var::leaf(value, true)
    }

    /// A leaf without gradient (an input).
    pub fn constant(value: Tensor) -> Var {
        Var::leaf(value, false)
    }

    fn leaf(value: Tensor, requires_grad: bool) -> Var {
        Var(Rc::new(Node {
            id: next_id(),
            value,
            requires_grad,
            grad: RefCell::new(None),
            parents: Vec::new(),
            backward: None,
            op: "leaf",
        }))
    }

    /// The result of op `op` on `parents`. The backward closure is kept only when recording
    /// is on and some parent needs a gradient.
    pub fn from_op(op: &'static str, value: Tensor, parents: &[&Var], backward: BackwardFn) -> Var {
        let needs = grad_enabled() && parents.iter().any(|p| p.requires_grad());
        Var(Rc::new(Node {
            id: next_id(),
            value,
            requires_grad: needs,
            grad: RefCell::new(None),
            parents: if needs {
                parents.iter().map(|&p| p.clone()).collect()
            } else {
                Vec::new()
            },
            backward: if needs { Some(backward) } else { None },
            op,
        }))
    }

    pub fn value(&self) -> &Tensor {
        &self.0.value
    }

    pub fn shape(&self) -> &[usize] {
        self.0.value.shape()
    }

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// The accumulated gradient of a leaf.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.borrow().clone()
    }

    pub fn set_grad(&self, g: Option<Tensor>) {
        *self.0.grad.borrow_mut() = g;
    }

    pub fn op(&self) -> &'static str {
        self.0.op
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
    // Reverse topological order by an explicit depth-first search (no recursion limit).
    let mut order: Vec<Var> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(loss.clone(), false)];
    while let Some((v, done)) = stack.pop() {
        if done {
            order.push(v);
            continue;
        }
        if !seen.insert(v.0.id) {
            continue;
        }
        stack.push((v.clone(), true));
        for p in &v.0.parents {
            if p.requires_grad() && !seen.contains(&p.0.id) {
                stack.push((p.clone(), false));
            }
        }
    }
    let gpu = loss.value().gpu().clone();
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    grads.insert(loss.0.id, Tensor::from_f32(&gpu, &[1.0], loss.shape())?);
    for v in order.iter().rev() {
        let Some(g) = grads.remove(&v.0.id) else {
            continue;
        };
        match &v.0.backward {
            Some(f) => {
                let pg = f(&g)?;
                for (p, pg) in v.0.parents.iter().zip(pg) {
                    let Some(pg) = pg else { continue };
                    if !p.requires_grad() {
                        continue;
                    }
                    if pg.shape() != p.shape() {
                        bail!(
                            "op {} produced a gradient of shape {:?} for an input of shape {:?}",
                            v.op(),
                            pg.shape(),
                            p.shape()
                        );
                    }
                    match grads.remove(&p.0.id) {
                        // Out of place: a backward may hand the same tensor to two parents.
                        Some(acc) => {
                            grads.insert(p.0.id, add_tensors(&acc, &pg)?);
                        }
                        None => {
                            grads.insert(p.0.id, pg);
                        }
                    }
                }
            }
            None => {
                let mut slot = v.0.grad.borrow_mut();
                match slot.as_ref() {
                    Some(acc) => add_into(acc, &g)?,
                    None => *slot = Some(g.duplicate()?),
                }
            }
        }
    }
    Ok(())
}
