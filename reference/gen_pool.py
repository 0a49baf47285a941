"""Writes tests/fixtures/pool.safetensors, PyTorch's reference for lskbb's spatial poolings
(src/ops/maxpool.rs, src/ops/adaptive_pool.rs): F.max_pool2d (ceil_mode=False, with
return_indices) and F.adaptive_avg_pool2d, forward and backward, on small odd inputs. PyTorch
computes in float64 from float32-representable inputs; tensors are stored as float32, indices
as int64. A max of float32-representable values is exact, so no draw hinges on rounding.

usage: python3 reference/gen_pool.py [OUT_FILE]

Layout: `max<i>.{x, grad_y, y, idx, grad_x}` with (k, stride, padding) in the metadata's
`max_cases`; `avg<i>.{x, grad_y, y, grad_x}` with the output size (oh, ow) in `avg_cases`.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (n, c, h, w, k, stride, padding): torchvision's ResNet stem pool (3/2/1) and VGG's (2/2/0)
# at odd sizes, an overlapping stride-1 window, a stride larger than the window, a window as
# large as the padded input, and a 1x1 map.
MAX_CASES = [
    (2, 3, 9, 9, 3, 2, 1), (1, 2, 8, 7, 2, 2, 0), (2, 1, 7, 11, 3, 1, 1), (1, 3, 10, 13, 2, 3, 1),
    (1, 2, 5, 5, 5, 3, 2), (3, 2, 1, 1, 3, 2, 1),
]
# (n, c, h, w, oh, ow): VGG's 7x7 pool of a 1x1 map (replication) and of a 7x7 map (the
# identity), shrinking with overlapping bins, growing, and mixed.
AVG_CASES = [
    (2, 3, 1, 1, 7, 7), (1, 2, 7, 7, 7, 7), (1, 2, 9, 11, 7, 7), (2, 1, 13, 6, 4, 5),
    (1, 3, 3, 5, 7, 4), (1, 1, 2, 3, 5, 7),
]

torch.set_default_dtype(torch.float64)


def randn(*shape):
    """Normal values that float32 represents exactly (the engine's inputs are float32)."""
    return torch.randn(*shape).to(torch.float32).to(torch.float64)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fixtures", "pool.safetensors")
    torch.manual_seed(16)
    out = {}
    for i, (n, c, h, w, k, s, p) in enumerate(MAX_CASES):
        x = randn(n, c, h, w).requires_grad_()
        y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
        gy = randn(*y.shape)
        (gx,) = torch.autograd.grad(y, x, gy)
        out.update({f"max{i}.x": f32(x), f"max{i}.grad_y": f32(gy), f"max{i}.y": f32(y),
                    f"max{i}.idx": idx.contiguous(), f"max{i}.grad_x": f32(gx)})
    for i, (n, c, h, w, oh, ow) in enumerate(AVG_CASES):
        x = randn(n, c, h, w).requires_grad_()
        y = F.adaptive_avg_pool2d(x, (oh, ow))
        gy = randn(*y.shape)
        (gx,) = torch.autograd.grad(y, x, gy)
        out.update({f"avg{i}.x": f32(x), f"avg{i}.grad_y": f32(gy), f"avg{i}.y": f32(y),
                    f"avg{i}.grad_x": f32(gx)})
    meta = {"kind": "pool", "torch": torch.__version__,
            "max_cases": json.dumps([dict(k=k, stride=s, padding=p) for *_, k, s, p in MAX_CASES]),
            "avg_cases": json.dumps([dict(oh=oh, ow=ow) for *_, oh, ow in AVG_CASES])}
    save_file(out, path, metadata=meta)
    print(f"{os.path.basename(path)}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
