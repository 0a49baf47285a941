"""Checks on a machine with PyTorch that lskbb checkpoints and the reference model move both
ways, and writes extra golden files (other shapes, classes, channels, seeds, alpha, theta,
gamma and losses) to prove `lskbb verify` is not tuned to the shared ones.

usage: python3 bench/interop.py REF_DIR LSKBB_CHECKPOINT OUT_DIR
  - loads LSKBB_CHECKPOINT (written by `lskbb train`) into the reference BBNResNet32 with
    load_state_dict(strict=True) and runs inference on it;
  - saves a fresh reference model's state_dict as OUT_DIR/torch_model.safetensors (for
    `lskbb predict --checkpoint` to load);
  - writes OUT_DIR/golden_*.safetensors with gen_golden.py's model_case / ops_file.
"""
import json
import os
import sys

ref, ckpt, out = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, ref)
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from lskbb_torch import BBNResNet32  # noqa: E402

os.makedirs(out, exist_ok=True)
with safe_open(ckpt, "pt") as f:
    meta = f.metadata() or {}
cfg = json.loads(meta["model"])
sd = load_file(ckpt)
m = BBNResNet32(cfg["classes"], lsk=cfg["lsk"], in_ch=cfg["in_ch"]).double()
m.load_state_dict({k: (v.double() if v.is_floating_point() else v) for k, v in sd.items()}, strict=True)
m.eval()
with torch.no_grad():
    z = m.infer(torch.randn(2, cfg["in_ch"], 16, 16, dtype=torch.float64))
print(f"torch strict load of {ckpt}: {len(sd)} tensors OK, inference logits shape {tuple(z.shape)}, finite {bool(torch.isfinite(z).all())}")

torch.manual_seed(5)
t = BBNResNet32(5, lsk=True, in_ch=1)
save_file({k: v.contiguous() for k, v in t.state_dict().items()}, os.path.join(out, "torch_model.safetensors"))
print(f"wrote torch_model.safetensors: {len(t.state_dict())} tensors")

torch.set_default_dtype(torch.float64)
from gen_golden import model_case, ops_file  # noqa: E402

# (path, name, seed, classes, hw, batch, lsk, loss, alpha, theta, gamma, counts, in_ch)
model_case(f"{out}/golden_lsk_dflcsce_gray.safetensors", "lsk_dflcsce_gray", 11, 5, 12, 3, True,
           "dflcsce", 0.3, 0.25, 1.5, [50, 20, 9, 4, 2], in_ch=1)
model_case(f"{out}/golden_plain_dflce_2cls.safetensors", "plain_dflce_2cls", 12, 2, 20, 4, False,
           "dflce", 0.9, 0.8, 3.0, [100, 10], in_ch=3)
model_case(f"{out}/golden_lsk_ce_8cls.safetensors", "lsk_ce_8cls", 13, 8, 24, 2, True,
           "ce", 0.5, 1.0, 2.0, [3451, 1014, 792, 626, 569, 560, 453, 444], in_ch=3)
# (n, cin, h, w, cout, k, stride, pad, dilation, groups, bias)
ops_file(f"{out}/golden_ops_extra.safetensors", 17, [
    (1, 16, 17, 15, 16, 3, 1, 1, 1, 1, False), (2, 8, 12, 12, 8, 5, 1, 2, 1, 8, True),
    (2, 8, 23, 21, 8, 7, 1, 9, 3, 8, True), (3, 3, 14, 14, 16, 3, 1, 1, 1, 1, False),
    (2, 32, 9, 9, 64, 3, 2, 1, 1, 1, False), (2, 5, 10, 13, 7, 1, 1, 0, 1, 1, True)])
