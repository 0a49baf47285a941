"""One bilateral training step of LSKBB, as lskbb's trainer takes it: both branches forward
(the uniform batch x_c and the reversed batch x_r through the shared trunk), the mixed logits,
the bilateral loss, backward, and SGD with momentum and weight decay."""
import torch

from losses import bbn_loss

# The paper's recipe (SPEC.md "Training"): SGD, lr 0.05, momentum 0.9, weight decay 2e-4.
SGD = {"lr": 0.05, "momentum": 0.9, "weight_decay": 2e-4, "nesterov": False}


def sgd(model, lr=SGD["lr"], momentum=SGD["momentum"], weight_decay=SGD["weight_decay"]):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def bilateral_step(model, x_c, y_c, x_r, y_r, alpha, loss_fn, opt=None):
    """Forward both branches, loss, backward; then opt.step() when an optimizer is given.
    Returns (logits, loss)."""
    model.train()
    if opt is not None:
        opt.zero_grad(set_to_none=True)
    z = model(x_c, x_r, alpha)
    loss = bbn_loss(loss_fn, z, y_c, y_r, alpha)
    loss.backward()
    if opt is not None:
        opt.step()
    return z, loss
