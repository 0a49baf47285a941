"""Writes tests/fixtures/ldam_cosine.safetensors, the reference of LDAM-DRW's loss and
classifier in lskbb (`LossKind::Ldam`, `model::head::Fc::Cosine`), computed in float64 by the
code of Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss"
(NeurIPS 2019), github.com/kaidic/LDAM-DRW, transcribed below:

- `LDAMLoss` (losses.py): margins m_j = 1/n_j^(1/4) scaled so the largest is max_m = 0.5;
  F.cross_entropy(s·where(onehot(y), x − m_y, x), y, weight) with s = 30.
- DRW's weights (cifar_train.py): (1 − β)/(1 − β^n_j), β = 0.9999, normalised to sum to C.
- `NormedLinear` (models/resnet_cifar.py): F.normalize(x, dim=1) @ F.normalize(W, dim=0)
  with W [in, out]; lskbb stores fc.weight as [classes, in] and normalises its rows, so the
  file's `cos.weight` is W transposed.

Tensors (labels int64, the rest float32):
- `counts` [C] (float32 of integers), `labels` [N], `logits` [N, C] (cosines, in [-1, 1]).
- `ldam.loss` [1], `ldam.grad` [N, C]: LDAM of `logits` and d loss / d logits;
  `drw.weights` [C], `ldam_drw.loss`, `ldam_drw.grad`: the same with DRW's weights.
- `cos.features` [N, F], `cos.weight` [C, F]: a batch of features and class vectors;
  `cos.logits` [N, C] = NormedLinear; `head.loss` [1] = LDAM with DRW's weights of them;
  `head.grad_features`, `head.grad_weight`: its gradients.

usage: python3 reference/gen_ldam.py [OUT_FILE]
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import REPO, f32  # noqa: E402

N, C, FEATURES = 9, 5, 12
COUNTS = [400, 173, 61, 20, 7]
MAX_M, S, BETA = 0.5, 30.0, 0.9999


def ldam_loss(x, target, cls_num_list, weight=None, max_m=MAX_M, s=S):
    """Cao et al.'s LDAMLoss.forward, on the CPU in float64."""
    m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
    m_list = m_list * (max_m / np.max(m_list))
    m_list = torch.tensor(m_list, dtype=torch.float64)
    index = torch.zeros_like(x, dtype=torch.bool)
    index.scatter_(1, target.view(-1, 1), True)
    batch_m = torch.matmul(m_list[None, :], index.double().transpose(0, 1)).view((-1, 1))
    output = torch.where(index, x - batch_m, x)
    return F.cross_entropy(s * output, target, weight=weight)


def drw_weights(cls_num_list, beta=BETA):
    """Cao et al.'s cifar_train.py, the DRW branch."""
    effective_num = 1.0 - np.power(beta, cls_num_list)
    w = (1.0 - beta) / np.array(effective_num)
    w = w / np.sum(w) * len(cls_num_list)
    return torch.tensor(w, dtype=torch.float64)


def normed_linear(x, w_in_out):
    """Cao et al.'s NormedLinear.forward."""
    return F.normalize(x, dim=1).mm(F.normalize(w_in_out, dim=0))


def exact(t):
    """t rounded to float32 (the engine's inputs are float32), computed on in float64."""
    return f32(t).double()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fixtures", "ldam_cosine.safetensors")
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(19)
    labels = torch.tensor([0, 4, 1, 3, 2, 4, 0, 3, 1])
    t = {"counts": torch.tensor(COUNTS, dtype=torch.float32), "labels": labels}

    logits = exact(torch.rand(N, C) * 2 - 1).requires_grad_()
    weights = drw_weights(COUNTS)
    for name, w in [("ldam", None), ("ldam_drw", weights)]:
        loss = ldam_loss(logits, labels, COUNTS, weight=w)
        (g,) = torch.autograd.grad(loss, logits)
        t[f"{name}.loss"] = loss.reshape(1)
        t[f"{name}.grad"] = g
    t["logits"] = logits.detach()
    t["drw.weights"] = weights

    features = exact(torch.randn(N, FEATURES)).requires_grad_()
    weight = exact(torch.rand(C, FEATURES) * 2 - 1).requires_grad_()
    cos = normed_linear(features, weight.t())
    loss = ldam_loss(cos, labels, COUNTS, weight=weights)
    gf, gw = torch.autograd.grad(loss, [features, weight])
    t.update({
        "cos.features": features.detach(), "cos.weight": weight.detach(), "cos.logits": cos.detach(),
        "head.loss": loss.reshape(1).detach(), "head.grad_features": gf, "head.grad_weight": gw,
    })
    tensors = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in t.items()}
    save_file(tensors, out, metadata={"kind": "ldam_cosine", "torch": torch.__version__,
                                      "max_m": str(MAX_M), "s": str(S), "beta": str(BETA)})
    print(f"wrote {out}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
