"""Checks that lskbb checkpoints and the PyTorch reference model move both ways.

usage: python3 bench/interop.py LSKBB_CHECKPOINT OUT_DIR
  - loads LSKBB_CHECKPOINT (written by `lskbb train`) into the reference BBNResNet32 with
    load_state_dict(strict=True) and runs inference on it;
  - saves a fresh reference model's state_dict as OUT_DIR/torch_model.safetensors (for
    `lskbb predict --checkpoint` to load).
"""
import json
import os
import sys

ckpt, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from lskbb_torch import PAPER_WIDTH, BBNResNet32  # noqa: E402

os.makedirs(out, exist_ok=True)
with safe_open(ckpt, "pt") as f:
    meta = f.metadata() or {}
cfg = json.loads(meta["model"])
sd = load_file(ckpt)
# Checkpoints name the backbone; older ones said lsk true/false.
backbone = cfg.get("backbone", "lsk-resnet32" if cfg.get("lsk") else "resnet32")
if backbone not in ("resnet32", "lsk-resnet32", "simam-resnet32"):
    sys.exit(f"{ckpt}: interop covers the ResNet-32 backbones, not {backbone}")
m = BBNResNet32(cfg["classes"], lsk=backbone == "lsk-resnet32", in_ch=cfg["in_ch"], width=cfg.get("width", PAPER_WIDTH),
                simam=backbone == "simam-resnet32").double()
m.load_state_dict({k: (v.double() if v.is_floating_point() else v) for k, v in sd.items()}, strict=True)
m.eval()
with torch.no_grad():
    z = m.infer(torch.randn(2, cfg["in_ch"], 16, 16, dtype=torch.float64))
print(f"torch strict load of {ckpt}: {len(sd)} tensors OK, inference logits shape {tuple(z.shape)}, "
      f"finite {bool(torch.isfinite(z).all())}")

torch.manual_seed(5)
t = BBNResNet32(5, lsk=True, in_ch=1)
save_file({k: v.contiguous() for k, v in t.state_dict().items()}, os.path.join(out, "torch_model.safetensors"))
print(f"wrote torch_model.safetensors: {len(t.state_dict())} tensors")
