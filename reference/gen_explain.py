"""Writes tests/fixtures/explain_w2.safetensors, the reference of `lskbb::explain`: a tiny LSK
bilateral model (width 2, 3 classes, RGB) with running statistics from data, its state_dict
as `state.<name>` (num_batches_tracked left out), a batch of two 16x12 images `input.x` (not
square, so that a swapped height and width shows), one class per image `input.classes`, and
what PyTorch computes in float64 for them:

- `expect.logits` [2, 3]: `BBNResNet32.infer`.
- `expect.mask.<block>` [2, 2, h, w]: every LSK module's sigmoid selection masks (channel 0
  weighs the 5x5 branch, channel 1 the dilated 7x7 one), taken by a hook on `conv_squeeze`.
- `expect.cam` [2, h, w]: Grad-CAM of class `input.classes[i]` for image i on the features the
  classifier pools, cat(cb_block(f), rb_block(f)): A = that concatenation (hooks keep both
  outputs), alpha_k = the spatial mean of d score / d A_k, cam = relu(sum_k alpha_k A_k).
- `expect.cam_up` [2, 16, 12]: each image's cam divided by its maximum, then
  `F.interpolate(mode="bilinear", align_corners=False)` to the input size.

usage: python3 reference/gen_explain.py [OUT_FILE]
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import REPO, calibrate_, f32, randn, round_f32_  # noqa: E402
from lskbb_torch import BBNResNet32, LSKBlock  # noqa: E402

CASE = dict(seed=11, classes=3, in_ch=3, width=2, batch=2, hw=16, alpha=0.5)
H, W = 16, 12


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fixtures", "explain_w2.safetensors")
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(CASE["seed"])
    m = BBNResNet32(CASE["classes"], lsk=True, in_ch=CASE["in_ch"], width=CASE["width"])
    calibrate_(m, CASE)
    round_f32_(m)
    m.eval()
    state = {k: f32(v) for k, v in m.state_dict().items() if v.is_floating_point()}
    masks = {}
    for name, mod in m.named_modules():
        if isinstance(mod, LSKBlock):
            block = name.removesuffix(".lsk")
            mod.conv_squeeze.register_forward_hook(
                lambda _m, _i, z, block=block: masks.__setitem__(block, z.detach().sigmoid()))
    last = {}
    for name in ("cb_block", "rb_block"):
        getattr(m, name).register_forward_hook(lambda _m, _i, a, name=name: last.__setitem__(name, a))
    x = randn(CASE["batch"], CASE["in_ch"], H, W)
    logits = m.infer(x)
    # Image 0: its predicted class; image 1: another class than its prediction.
    pred = logits.argmax(1)
    classes = torch.stack([pred[0], (pred[1] + 1) % CASE["classes"]])
    branches = [last["cb_block"], last["rb_block"]]
    grads = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), branches)
    a, grad = torch.cat(branches, dim=1), torch.cat(grads, dim=1)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1))
    peak = cam.flatten(1).amax(1).clamp_min(1e-300)[:, None, None]
    cam_up = F.interpolate((cam / peak)[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    tensors = {f"state.{k}": v for k, v in state.items()}
    tensors.update({"input.x": f32(x), "input.classes": classes, "expect.logits": f32(logits),
                    "expect.cam": f32(cam), "expect.cam_up": f32(cam_up)})
    tensors.update({f"expect.mask.{k}": f32(v) for k, v in masks.items()})
    config = {k: CASE[k] for k in ("classes", "in_ch", "width")}
    save_file(tensors, out, metadata={"kind": "explain", "torch": torch.__version__,
                                      "config": json.dumps(dict(config, lsk=True, bilateral=True))})
    print(f"{out}: logits {logits.detach().numpy().round(4).tolist()}, classes {classes.tolist()}, "
          f"cam max {cam.flatten(1).amax(1).detach().numpy().round(4).tolist()}, "
          f"mask range [{min(float(v.min()) for v in masks.values()):.3f}, "
          f"{max(float(v.max()) for v in masks.values()):.3f}], {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
