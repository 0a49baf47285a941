"""Writes tests/fixtures/simam.safetensors, the PyTorch reference of SimAM, the op of
SimAM-ResNet-32 (float64 from float32-representable inputs, stored as float32):

- `simam<i>.{x, grad_y, y, grad_x}`: SimAM (simam_torch.SimAM, lambda 1e-4) forward and
  backward on odd shapes, with the shapes in the metadata's `simam_cases`.

usage: python3 reference/gen_simam.py [OUT_FILE]
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simam_torch import SimAM, SIMAM_LAMBDA  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Batch 1, a 1x2 plane (m - 1 = 1), odd planes, one plane of whole vec4s, a wide plane, and
# one shifted far from zero (the variance from deviations, not from squares).
SIMAM_CASES = [(1, 1, 1, 2, 0.0), (2, 3, 5, 7, 0.0), (1, 4, 8, 8, 0.0), (3, 2, 3, 3, 0.0),
               (1, 2, 17, 19, 0.0), (2, 2, 4, 5, 20.0)]

torch.set_default_dtype(torch.float64)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def randn(*shape):
    """Normal values that float32 represents exactly (the engine's inputs are float32)."""
    return torch.randn(*shape).to(torch.float32).to(torch.float64)


def simam_cases():
    out = {}
    for i, (n, c, h, w, shift) in enumerate(SIMAM_CASES):
        # shifted, then rounded again: the engine's inputs are float32
        x = (randn(n, c, h, w) + shift).to(torch.float32).to(torch.float64).requires_grad_()
        y = SimAM()(x)
        gy = randn(*y.shape)
        y.backward(gy)
        p = f"simam{i}."
        out.update({p + "x": f32(x), p + "grad_y": f32(gy), p + "y": f32(y), p + "grad_x": f32(x.grad)})
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fixtures", "simam.safetensors")
    torch.manual_seed(16)
    out = simam_cases()
    meta = {"kind": "backbone_ops", "torch": torch.__version__,
            "simam_cases": json.dumps([list(c[:4]) for c in SIMAM_CASES]), "simam_lambda": str(SIMAM_LAMBDA)}
    save_file(out, path, metadata=meta)
    print(f"{os.path.basename(path)}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
