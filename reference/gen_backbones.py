"""Writes the golden files of lskbb's ResNet-18 and VGG16-BN backbones (src/model/resnet18.rs,
src/model/vgg.rs): the same networks in PyTorch at tiny widths, single-branch (torchvision's
layout) and bilateral (BBN's branch blocks), each file holding the weights, an input, the
logits and the gradients of a cross-entropy loss. PyTorch computes in float64 from
float32-representable weights and inputs; tensors are stored as float32, labels as int64.

usage: python3 reference/gen_backbones.py [OUT_DIR]   (default tests/fixtures/backbones)

At width 64 the single-branch models' state_dict keys must equal torchvision's resnet18() and
vgg16_bn() keys: checked here when torchvision is installed (`pip install torchvision`; the
Rust tests do not need it).

A draw is refused when a max pooling window's two largest values are closer than 1e-4 of that
pooling input's RMS (unless both are ReLU's exact zeros): the engine computes in float32 and
could route the gradient through the other element (gen_golden.py explains the same check
for the LSK module). A draw where a listed parameter's gradient is all zero is refused too.

Layout of each file: `state.<name>` (the model's state_dict, num_batches_tracked left out),
`input.x` [B, C, H, W] (and `input.x_r` for bilateral), `input.y` [B] (int64),
`expect.logits`, `expect.grad_logits` (d loss / d logits), `expect.grad.<name>` for the
parameters listed in `config.grads`; `config` (JSON) names the backbone, width, classes,
in_ch, bilateral, alpha and mode (`train`: batch statistics, `eval`: running statistics and
no dropout).
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_DRAWS = 50
GAP = 1e-4
# ResNet-18 trains with batch statistics; VGG runs in eval mode (running statistics drawn at
# random), since its training forward drops units with lskbb's own hash masks.
CASES = [
    dict(name="resnet18_single_w3", backbone="resnet18", width=3, in_ch=3, classes=5, hw=(19, 21),
         batch=3, bilateral=False, mode="train", seed=1,
         grads=["conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"]),
    dict(name="resnet18_bilateral_w2", backbone="resnet18", width=2, in_ch=1, classes=3, hw=(17, 16),
         batch=2, bilateral=True, alpha=0.3, mode="train", seed=2,
         grads=["conv1.weight", "layer3.1.conv2.weight", "cb_block.conv1.weight", "rb_block.bn1.bias", "fc.weight"]),
    dict(name="vgg16_single_w1", backbone="vgg16", width=1, in_ch=3, classes=4, hw=(37, 35),
         batch=2, bilateral=False, mode="eval", seed=3,
         grads=["features.0.weight", "features.21.bias", "features.41.weight", "classifier.0.bias", "classifier.3.weight", "classifier.6.weight"]),
    dict(name="vgg16_bilateral_w1", backbone="vgg16", width=1, in_ch=1, classes=3, hw=(32, 33),
         batch=2, bilateral=True, alpha=0.6, mode="eval", seed=4,
         grads=["features.0.weight", "cb_block.0.weight", "rb_block.1.weight", "classifier.3.weight", "classifier.6.bias"]),
]
VGG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

torch.set_default_dtype(torch.float64)


class Pools:
    """Records every max pooling input (for the near-tie check)."""

    def __init__(self):
        self.inputs = []

    def __call__(self, x, k, s, p):
        self.inputs.append((x.detach(), k, s, p))
        return F.max_pool2d(x, k, s, p)

    def min_gap(self):
        gap = float("inf")
        for x, k, s, p in self.inputs:
            rms = x.pow(2).mean().sqrt().item()
            w = F.pad(x, (p, p, p, p), value=float("-inf")).unfold(2, k, s).unfold(3, k, s)
            top = w.flatten(-2).topk(2, dim=-1).values
            # Windows of ReLU zeros tie exactly in float32 too (and pass no gradient).
            exact = (top[..., 0] == 0) & (top[..., 1] == 0)
            gaps = ((top[..., 0] - top[..., 1]) / rms).masked_fill(exact, float("inf"))
            gap = min(gap, gaps.min().item())
        return gap


class BasicBlock(nn.Module):
    """torchvision's BasicBlock."""

    def __init__(self, cin, cout, stride, pools):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision's resnet18 at width w (64: torchvision's); bilateral: layer4's last block
    as cb_block / rb_block, fc over both branches' features."""

    def __init__(self, w, in_ch, classes, bilateral, pools):
        super().__init__()
        self.pools, self.bilateral = pools, bilateral
        self.conv1 = nn.Conv2d(in_ch, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU()
        for stage, (cin, cout, stride) in enumerate([(w, w, 1), (w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 8 * w, 2)], 1):
            blocks = [BasicBlock(cin, cout, stride, pools)]
            if stage < 4 or not bilateral:
                blocks.append(BasicBlock(cout, cout, 1, pools))
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        if bilateral:
            self.cb_block = BasicBlock(8 * w, 8 * w, 1, pools)
            self.rb_block = BasicBlock(8 * w, 8 * w, 1, pools)
        self.fc = nn.Linear(8 * w * (2 if bilateral else 1), classes)

    def trunk(self, x):
        x = self.pools(self.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def neck(self, x):
        return x.mean((2, 3))


class VGG16BN(nn.Module):
    """torchvision's vgg16_bn at width w (64: torchvision's); bilateral: the last conv unit
    (features.40-42) as cb_block / rb_block, each branch through the last pooling, avgpool
    and classifier.0 / .3, classifier.6 over both branches' features."""

    def __init__(self, w, in_ch, classes, bilateral, pools):
        super().__init__()
        self.pools, self.bilateral = pools, bilateral
        layers, cin = [], in_ch
        for v in VGG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v * w // 64, 3, padding=1), nn.BatchNorm2d(v * w // 64), nn.ReLU()]
                cin = v * w // 64
        if bilateral:
            layers = layers[:40]
            self.cb_block = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.BatchNorm2d(cin), nn.ReLU())
            self.rb_block = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.BatchNorm2d(cin), nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        h = 4096 * w // 64
        self.classifier = nn.Sequential(nn.Linear(cin * 49, h), nn.ReLU(), nn.Dropout(), nn.Linear(h, h), nn.ReLU(),
                                        nn.Dropout(), nn.Linear(h * (2 if bilateral else 1), classes))

    def run(self, mods, x):
        for m in mods:
            x = self.pools(x, 2, 2, 0) if isinstance(m, nn.MaxPool2d) else m(x)
        return x

    def trunk(self, x):
        return self.run(self.features, x)

    def neck(self, x):
        if self.bilateral:
            x = self.pools(x, 2, 2, 0)
        return self.run(list(self.classifier)[:6], torch.flatten(self.avgpool(x), 1))


def build(c, pools):
    cls = ResNet18 if c["backbone"] == "resnet18" else VGG16BN
    return cls(c["width"], c["in_ch"], c["classes"], c["bilateral"], pools)


def logits(m, c, x, x_r):
    if not m.bilateral:
        f = m.neck(m.trunk(x))
        return (m.fc if hasattr(m, "fc") else m.classifier[6])(f)
    a = c["alpha"]
    f_c = m.neck(m.cb_block(m.trunk(x)))
    f_r = m.neck(m.rb_block(m.trunk(x_r)))
    head = m.fc if hasattr(m, "fc") else m.classifier[6]
    return head(2 * torch.cat([a * f_c, (1 - a) * f_r], 1))


def check_torchvision_keys():
    try:
        import torchvision
    except ImportError:
        print("torchvision not installed: state_dict keys not compared")
        return
    for name, tv in [("resnet18", torchvision.models.resnet18), ("vgg16", torchvision.models.vgg16_bn)]:
        ours = build(dict(backbone=name, width=64, in_ch=3, classes=1000, bilateral=False), Pools())
        theirs = tv()
        assert list(ours.state_dict()) == list(theirs.state_dict()), name
        for k, v in theirs.state_dict().items():
            assert ours.state_dict()[k].shape == v.shape, (name, k)
        print(f"{name}: state_dict keys and shapes equal torchvision's ({len(theirs.state_dict())})")


def draw(c, seed):
    torch.manual_seed(seed)
    pools = Pools()
    m = build(c, pools)
    with torch.no_grad():
        for t in list(m.parameters()) + list(m.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(torch.float32).to(torch.float64))
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                # Non-trivial affine parameters and running statistics, float32-exact.
                for t, lo, hi in [(mod.weight, 0.5, 1.5), (mod.bias, -0.5, 0.5), (mod.running_mean, -0.5, 0.5),
                                  (mod.running_var, 0.5, 2.0)]:
                    t.copy_((lo + (hi - lo) * torch.rand(t.shape)).to(torch.float32).to(torch.float64))
    m.train(c["mode"] == "train")
    shape = (c["batch"], c["in_ch"], *c["hw"])
    x = torch.randn(*shape).to(torch.float32).to(torch.float64)
    x_r = torch.randn(*shape).to(torch.float32).to(torch.float64) if c["bilateral"] else None
    y = torch.randint(0, c["classes"], (c["batch"],))
    return m, pools, x, x_r, y


def case(out_dir, c):
    for d in range(MAX_DRAWS):
        m, pools, x, x_r, y = draw(c, c["seed"] * 1000 + d)
        state = {k: v.clone() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
        z = logits(m, c, x, x_r)
        z.retain_grad()
        F.cross_entropy(z, y).backward()
        params = dict(m.named_parameters())
        # A gradient that is all zero (a dead ReLU channel at width 1) would check nothing.
        if pools.min_gap() > GAP and all(params[g].grad.abs().max() > 0 for g in c["grads"]):
            break
    else:
        sys.exit(f"{c['name']}: no draw without a near tie or a zero gradient in {MAX_DRAWS}")
    out = {f"state.{k}": v.to(torch.float32).contiguous() for k, v in state.items()}
    out["input.x"] = x.to(torch.float32)
    if x_r is not None:
        out["input.x_r"] = x_r.to(torch.float32)
    out["input.y"] = y.contiguous()
    out["expect.logits"] = z.detach().to(torch.float32)
    out["expect.grad_logits"] = z.grad.to(torch.float32)
    for g in c["grads"]:
        out[f"expect.grad.{g}"] = params[g].grad.to(torch.float32).contiguous()
    cfg = {k: c[k] for k in ("backbone", "width", "in_ch", "classes", "bilateral", "mode", "grads")}
    cfg["alpha"] = c.get("alpha", 1.0)
    path = os.path.join(out_dir, c["name"] + ".safetensors")
    save_file(out, path, metadata={"kind": "backbone", "torch": torch.__version__, "config": json.dumps(cfg)})
    print(f"{c['name']}: draw {d}, smallest pooling gap {pools.min_gap():.2e}, {os.path.getsize(path)} bytes")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fixtures", "backbones")
    os.makedirs(out_dir, exist_ok=True)
    check_torchvision_keys()
    for c in CASES:
        case(out_dir, c)


if __name__ == "__main__":
    main()
