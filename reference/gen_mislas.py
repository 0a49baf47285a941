"""Writes tests/fixtures/mislas_las.safetensors, the PyTorch reference of MiSLAS's
label-aware smoothing (Zhong et al., "Improving Calibration for Long-Tailed Recognition",
CVPR 2021). `LabelAwareSmoothing` below is their methods.py (github.com/dvlab-research/MiSLAS,
commit 0fc381e) with the .cuda() calls left out; in float64 for each shape
(concave, linear, convex) on long-tailed counts `input.counts` it gives:

- `expect.<shape>.smooth` [C]: the per-class smoothing ε_j.
- `expect.<shape>.loss` [1] and `expect.<shape>.grad` [N, C]: the loss of logits `input.z`
  [N, C] at labels `input.y` [N] (int64) and its gradient by autograd.
- `expect.mixup.loss` [1], `expect.mixup.grad` [N, C]: their `mixup_criterion` with the
  concave loss at λ = `input.lam` and the labels permuted by `input.perm` (int64), and
  `expect.mixup.x` [N, 3, 5, 7]: their `mixup_data`'s λ·x + (1 − λ)·x[perm] of `input.x`.

usage: python3 reference/gen_mislas.py [OUT_FILE]
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, C = 13, 7
COUNTS = [500, 320, 171, 90, 40, 11, 5]
LAM = 0.3125  # exactly representable in f32
HEAD, TAIL = 0.4, 0.1  # their CIFAR-100-LT (imbalance 100) stage-2 config


class LabelAwareSmoothing(nn.Module):
    def __init__(self, cls_num_list, smooth_head, smooth_tail, shape='concave', power=None):
        super(LabelAwareSmoothing, self).__init__()

        n_1 = max(cls_num_list)
        n_K = min(cls_num_list)

        if shape == 'concave':
            self.smooth = smooth_tail + (smooth_head - smooth_tail) * np.sin((np.array(cls_num_list) - n_K) * np.pi / (2 * (n_1 - n_K)))

        elif shape == 'linear':
            self.smooth = smooth_tail + (smooth_head - smooth_tail) * (np.array(cls_num_list) - n_K) / (n_1 - n_K)

        elif shape == 'convex':
            self.smooth = smooth_head + (smooth_head - smooth_tail) * np.sin(1.5 * np.pi + (np.array(cls_num_list) - n_K) * np.pi / (2 * (n_1 - n_K)))

        elif shape == 'exp' and power is not None:
            self.smooth = smooth_tail + (smooth_head - smooth_tail) * np.power((np.array(cls_num_list) - n_K) / (n_1 - n_K), power)

        self.smooth = torch.from_numpy(self.smooth)

    def forward(self, x, target):
        smoothing = self.smooth[target]
        confidence = 1. - smoothing
        logprobs = F.log_softmax(x, dim=-1)
        nll_loss = -logprobs.gather(dim=-1, index=target.unsqueeze(1))
        nll_loss = nll_loss.squeeze(1)
        smooth_loss = -logprobs.mean(dim=-1)
        loss = confidence * nll_loss + smoothing * smooth_loss

        return loss.mean()


def mixup_criterion(criterion, pred, y_a, y_b, lam):
    return lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fixtures", "mislas_las.safetensors")
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(16)
    # Inputs rounded to f32 first, so that both sides start from the same values.
    z0 = f32(torch.randn(N, C) * 3).double()
    y = torch.randint(0, C, (N,))
    perm = torch.randperm(N)
    x = f32(torch.randn(N, 3, 5, 7)).double()
    t = {"input.z": f32(z0), "input.y": y, "input.perm": perm, "input.x": f32(x),
         "input.counts": torch.tensor(COUNTS, dtype=torch.int64),
         "input.lam": torch.tensor([LAM], dtype=torch.float32)}
    for shape in ("concave", "linear", "convex"):
        crit = LabelAwareSmoothing(COUNTS, HEAD, TAIL, shape=shape)
        z = z0.clone().requires_grad_(True)
        loss = crit(z, y)
        loss.backward()
        t[f"expect.{shape}.smooth"] = f32(crit.smooth)
        t[f"expect.{shape}.loss"] = f32(loss.reshape(1))
        t[f"expect.{shape}.grad"] = f32(z.grad)
    crit = LabelAwareSmoothing(COUNTS, HEAD, TAIL)
    z = z0.clone().requires_grad_(True)
    loss = mixup_criterion(crit, z, y, y[perm], LAM)
    loss.backward()
    t["expect.mixup.loss"] = f32(loss.reshape(1))
    t["expect.mixup.grad"] = f32(z.grad)
    t["expect.mixup.x"] = f32(LAM * x + (1 - LAM) * x[perm, :])
    save_file(t, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
