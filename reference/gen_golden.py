"""Writes the golden files that lskbb's tests and `lskbb verify` compare against: PyTorch
computing in float64 from float32-representable inputs, every tensor stored as float32 (labels
as int64). The layout of each file is in README.md beside this script.

usage: python3 reference/gen_golden.py [OUT_DIR] [--only NAME ...] [--gap-threshold G]
       (OUT_DIR defaults to tests/fixtures/golden; NAME is a file name without .safetensors)

A draw is refused when it hinges on rounding: the engine computes in float32, and where the two
largest values of a max (the LSK module's channel max, any max pooling) are closer than the
float32 error of those values, the engine may take the other one and route the gradient
through another element than the float64 reference did. For each draw the script runs the same
forward in float32 too, measures how far float32 moves the values that every max compares
(relative to the RMS of each compared tensor), and redraws until the smallest gap is above both
G (default 1e-4) and 10 times that float32 deviation. README.md explains the numbers.
"""
import argparse
import copy
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lskbb_torch import BBNResNet32, MaxGaps  # noqa: E402
from losses import by_name, bbn_loss  # noqa: E402
from step import SGD  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_DRAWS = 50
# The model steps: every loss, gamma 1 and 2, 1 and 3 input channels, 2 to 8 classes, odd
# and even sizes, batch 2 to 4, LSK and plain; the first at the paper's width 16, the others
# at widths 2 to 6 (odd channel counts where the LSK module halves 6), to keep the files small.
MODEL_CASES = [
    dict(name="model_lsk16_dflce", seed=1, lsk=True, width=16, in_ch=3, classes=3, hw=9, batch=2,
         loss="dflce", alpha=0.7, theta=0.6, gamma=2.0, counts=[40, 12, 4]),
    dict(name="model_lsk_dflcsce_gray_8cls", seed=2, lsk=True, width=4, in_ch=1, classes=8, hw=11, batch=3,
         loss="dflcsce", alpha=0.3, theta=0.25, gamma=1.0, counts=[3451, 1014, 792, 626, 569, 560, 453, 444]),
    dict(name="model_plain_ce_4cls", seed=3, lsk=False, width=4, in_ch=3, classes=4, hw=13, batch=4,
         loss="ce", alpha=0.4, theta=1.0, gamma=2.0, counts=[30, 10, 5, 3]),
    dict(name="model_lsk_focal_gray_2cls", seed=4, lsk=True, width=2, in_ch=1, classes=2, hw=15, batch=2,
         loss="focal", alpha=0.9, theta=1.0, gamma=1.0, counts=[3875, 1341]),
    dict(name="model_plain_cbce_5cls", seed=5, lsk=False, width=2, in_ch=3, classes=5, hw=12, batch=3,
         loss="cb-ce", alpha=0.5, theta=1.0, gamma=2.0, counts=[50, 20, 9, 4, 2]),
    dict(name="model_lsk6_ce_6cls", seed=6, lsk=True, width=6, in_ch=3, classes=6, hw=10, batch=4,
         loss="ce", alpha=0.55, theta=1.0, gamma=2.0, counts=[60, 30, 15, 8, 4, 2]),
    dict(name="model_plain_dflce_gray_2cls", seed=7, lsk=False, width=2, in_ch=1, classes=2, hw=9, batch=2,
         loss="dflce", alpha=0.2, theta=0.8, gamma=2.0, counts=[100, 10]),
    dict(name="model_lsk_dflce_g1_5cls", seed=8, lsk=True, width=4, in_ch=3, classes=5, hw=17, batch=3,
         loss="dflce", alpha=0.45, theta=0.35, gamma=1.0, counts=[500, 120, 31, 9, 5]),
    # SimAM-ResNet-32 (table 4), width 2, an odd size (its last stage's planes 3x3).
    dict(name="model_simam_ce_3cls", seed=9, lsk=False, simam=True, width=2, in_ch=3, classes=3, hw=11,
         batch=2, loss="ce", alpha=0.6, theta=1.0, gamma=2.0, counts=[40, 9, 3]),
]
# (n, cin, h, w, cout, k, stride, pad, dilation, groups, bias): every conv the model has, at
# odd sizes, plus strides, dilations and groups around them.
OPS_CONVS = [
    (2, 3, 9, 9, 4, 3, 1, 1, 1, 1, False), (2, 4, 9, 8, 6, 3, 2, 1, 1, 1, False),
    (2, 6, 11, 11, 6, 5, 1, 2, 1, 6, True), (1, 6, 13, 12, 6, 7, 1, 9, 3, 6, True),
    (2, 4, 7, 7, 2, 1, 1, 0, 1, 1, True), (1, 2, 8, 8, 2, 7, 1, 3, 1, 1, True)]
OPS_EXTRA_CONVS = [
    (1, 16, 17, 15, 16, 3, 1, 1, 1, 1, False), (2, 8, 12, 12, 8, 5, 1, 2, 1, 8, True),
    (2, 8, 23, 21, 8, 7, 1, 9, 3, 8, True), (3, 3, 14, 14, 16, 3, 1, 1, 1, 1, False),
    (2, 32, 9, 9, 64, 3, 2, 1, 1, 1, False), (2, 5, 10, 13, 7, 1, 1, 0, 1, 1, True)]

torch.set_default_dtype(torch.float64)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def randn(*shape):
    """Normal values that float32 represents exactly (the engine's inputs are float32)."""
    return torch.randn(*shape).to(torch.float32).to(torch.float64)


def round_f32_(model):
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(torch.float32).to(torch.float64))


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def calibrate_(model, c, draws=4):
    """Running statistics from data, as after training: the cumulative mean and variance of
    `draws` bilateral forward passes on inputs drawn like the step's. (Random running
    statistics make eval-mode activations grow through 15 LSK products until float64
    overflows, and the eval-mode logits would never be checked against a finite value.)"""
    with torch.no_grad():
        for bn in batch_norms(model):
            bn.weight.uniform_(0.5, 1.5)  # non-trivial affine parameters
            bn.bias.uniform_(-0.2, 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
        model.train()
        for _ in range(draws):
            shape = (c["batch"], c["in_ch"], c["hw"], c["hw"])
            model(randn(*shape), randn(*shape), c["alpha"])
        for bn in batch_norms(model):
            bn.momentum = 0.1
            bn.num_batches_tracked.zero_()


def float32_deviation(gaps64, gaps32):
    """The largest |float32 - float64| of the values any max compared, relative to the RMS of
    their tensor, over every max of the run."""
    if len(gaps64.records) != len(gaps32.records):
        raise RuntimeError("the float32 run took a different number of maxima")
    worst = 0.0
    for (_, _, a, _), (_, _, b, _) in zip(gaps64.records, gaps32.records):
        rms = a.pow(2).mean().sqrt().clamp_min(1e-300)
        worst = max(worst, float((b.to(torch.float64) - a).abs().max() / rms))
    return worst


def run_step(m, x_c, x_r, y_c, y_r, alpha, loss_fn, backward):
    """The training forward (and backward), then eval-mode inference on x_c, recording every
    max; returns (logits, loss, inference logits, gaps)."""
    with MaxGaps() as gaps:
        m.train()
        z = m(x_c, x_r, alpha)
        loss = bbn_loss(loss_fn, z, y_c, y_r, alpha)
        if backward:
            loss.backward()
        m.eval()
        with torch.no_grad():
            zi = m.infer(x_c)
    return z, loss, zi, gaps


def model_case(out_dir, c, threshold):
    loss_fn = by_name(c["loss"], c["theta"], c["gamma"], c["counts"])
    for draw in range(MAX_DRAWS):
        torch.manual_seed(c["seed"] * 1000 + draw)
        m = BBNResNet32(c["classes"], lsk=c["lsk"], in_ch=c["in_ch"], width=c["width"],
                        simam=c.get("simam", False))
        calibrate_(m, c)
        round_f32_(m)
        shape = (c["batch"], c["in_ch"], c["hw"], c["hw"])
        x_c, x_r = randn(*shape), randn(*shape)
        y_c = torch.randint(0, c["classes"], (c["batch"],))
        y_r = torch.randint(0, c["classes"], (c["batch"],))
        params0 = {k: f32(v) for k, v in m.named_parameters()}
        buffers0 = {k: f32(v) for k, v in m.named_buffers() if v.is_floating_point()}
        m32 = copy.deepcopy(m).float()
        z, loss, zi, g64 = run_step(m, x_c, x_r, y_c, y_r, c["alpha"], loss_fn, True)
        loss32 = by_name(c["loss"], c["theta"], c["gamma"], c["counts"])
        *_, g32 = run_step(m32, x_c.float(), x_r.float(), y_c, y_r, c["alpha"], loss32, False)
        dev = float32_deviation(g64, g32)
        bound = max(threshold, 10 * dev)
        small = g64.smallest()
        gap, where = (small[1], small[0]) if small else (float("inf"), "none")
        finite = all(torch.isfinite(t).all() for t in [z, loss, zi] + [p.grad for p in m.parameters()])
        if gap >= bound and finite:
            break
        why = f"smallest max gap {gap:.2e} at {where} < {bound:.2e}" if finite else "non-finite values"
        print(f"{c['name']}: draw {draw} refused ({why}); redrawing")
    else:
        raise SystemExit(f"{c['name']}: no acceptable draw in {MAX_DRAWS}")
    out = {f"param.{k}": v for k, v in params0.items()}
    out.update({f"buffer.{k}": v for k, v in buffers0.items()})
    out.update({"input.x_c": f32(x_c), "input.x_r": f32(x_r), "input.y_c": y_c, "input.y_r": y_r,
                "expect.logits": f32(z), "expect.loss": f32(loss.reshape(1)), "expect.infer_logits": f32(zi)})
    out.update({f"expect.grad.{k}": f32(p.grad) for k, p in m.named_parameters()})
    out.update({f"expect.buffer.{k}": f32(v) for k, v in m.named_buffers() if v.is_floating_point()})
    config = {k: c[k] for k in ("classes", "hw", "batch", "in_ch", "width", "lsk", "loss", "alpha", "theta", "gamma")}
    if c.get("simam"):
        config["backbone"] = "simam-resnet32"
    config.update({"class_counts": c["counts"], "cb_beta": 0.9999, "bn_momentum": 0.1, "bn_eps": 1e-5, "sgd": SGD,
                   "near_tie": {"smallest_gap": gap if small else None, "where": where, "float32_deviation": dev,
                                "threshold": bound, "draw": draw}})
    meta = {"kind": "model_step", "name": c["name"], "seed": str(c["seed"] * 1000 + draw),
            "torch": torch.__version__, "config": json.dumps(config)}
    save_file(out, os.path.join(out_dir, c["name"] + ".safetensors"), metadata=meta)
    print(f"{c['name']}: draw {draw}, loss {float(loss.detach()):.5f}, max |logit| {float(z.detach().abs().max()):.3f}, "
          f"max |infer logit| {float(zi.abs().max()):.3f}, {len(params0)} parameters; smallest max gap "
          f"{gap:.2e} ({where}), float32 deviation {dev:.2e}")


def conv_cases(specs):
    out, cases = {}, []
    for i, (n, cin, h, w, cout, k, stride, pad, dil, groups, bias) in enumerate(specs):
        x = randn(n, cin, h, w).requires_grad_()
        wt = (randn(cout, cin // groups, k, k) * 0.3).to(torch.float32).to(torch.float64).requires_grad_()
        b = (randn(cout) * 0.1).to(torch.float32).to(torch.float64).requires_grad_() if bias else None
        y = F.conv2d(x, wt, b, stride, pad, dil, groups)
        gy = randn(*y.shape)
        y.backward(gy)
        p = f"conv{i}."
        out.update({p + "x": f32(x), p + "w": f32(wt), p + "grad_y": f32(gy), p + "y": f32(y),
                    p + "grad_x": f32(x.grad), p + "grad_w": f32(wt.grad)})
        if bias:
            out.update({p + "b": f32(b), p + "grad_b": f32(b.grad)})
        cases.append({"prefix": p, "stride": stride, "padding": pad, "dilation": dil, "groups": groups, "bias": bias})
    return out, cases


# Losses on logits: every loss, gamma 1 and 2. Each entry names its loss and settings.
OPS_LOSSES = {
    "focal": {"loss": "focal", "gamma": 2.0},
    "focal_g1": {"loss": "focal", "gamma": 1.0},
    "ce": {"loss": "ce"},
    "cb-ce": {"loss": "cb-ce", "class_counts": [500, 120, 31, 5], "cb_beta": 0.9999},
    "dflce": {"loss": "dflce", "theta": 0.37, "gamma": 2.0},
    "dflcsce": {"loss": "dflcsce", "theta": 0.37, "gamma": 1.0, "class_counts": [500, 120, 31, 5], "cb_beta": 0.9999},
}


def ops_file(path, seed, conv_specs, threshold):
    torch.manual_seed(seed)
    out, cases = conv_cases(conv_specs)
    # batch norm (training mode) forward and backward
    x = randn(4, 6, 5, 7).requires_grad_()
    g = (torch.rand(6) + 0.5).to(torch.float32).to(torch.float64).requires_grad_()  # exact in float32
    beta = randn(6).requires_grad_()
    y = F.batch_norm(x, None, None, g, beta, training=True, eps=1e-5)
    gy = randn(*y.shape)
    y.backward(gy)
    out.update({"bn.x": f32(x), "bn.gamma": f32(g), "bn.beta": f32(beta), "bn.grad_y": f32(gy), "bn.y": f32(y),
                "bn.grad_x": f32(x.grad), "bn.grad_gamma": f32(g.grad), "bn.grad_beta": f32(beta.grad)})
    # channel mean and max as in the LSK module's spatial selection; its inputs are exact in
    # float32, so only an exact tie could hinge on rounding, and the draw must have none
    for _ in range(MAX_DRAWS):
        x = randn(3, 8, 6, 5)
        with MaxGaps() as gaps:
            MaxGaps.note("chanpool", x, 1)
        if gaps.smallest()[1] >= threshold:
            break
    else:
        raise SystemExit("chanpool: no draw without a near-tie")
    x.requires_grad_()
    agg = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True)[0]], 1)
    gy = randn(*agg.shape)
    agg.backward(gy)
    out.update({"chanpool.x": f32(x), "chanpool.grad_y": f32(gy), "chanpool.y": f32(agg), "chanpool.grad_x": f32(x.grad)})
    for name, s in OPS_LOSSES.items():
        fn = by_name(s["loss"], s.get("theta", 1.0), s.get("gamma", 2.0), s.get("class_counts"))
        z = (randn(16, 4) * 2).requires_grad_()
        yy = torch.randint(0, 4, (16,))
        v = fn(z, yy)
        v.backward()
        out.update({f"loss.{name}.logits": f32(z), f"loss.{name}.y": yy, f"loss.{name}.value": f32(v.reshape(1)),
                    f"loss.{name}.grad": f32(z.grad)})
    # three steps of torch.optim.SGD (momentum, weight decay) from a fresh momentum buffer
    p = torch.nn.Parameter(randn(5, 7))
    out["sgd.p"] = f32(p)
    opt = torch.optim.SGD([p], lr=SGD["lr"], momentum=SGD["momentum"], weight_decay=SGD["weight_decay"])
    for i in range(3):
        p.grad = randn(5, 7)
        out[f"sgd.grad{i}"] = f32(p.grad)
        opt.step()
        out[f"sgd.p{i + 1}"] = f32(p)
    meta = {"kind": "ops", "torch": torch.__version__, "conv_cases": json.dumps(cases),
            "losses": json.dumps(OPS_LOSSES), "bn": json.dumps({"eps": 1e-5, "training": True}),
            "sgd": json.dumps(dict(SGD, steps=3))}
    save_file(out, path, metadata=meta)
    print(f"{os.path.basename(path)}: {len(out)} tensors")


def torch_state_dict(path):
    """A state_dict as PyTorch saves it (num_batches_tracked included), for the test that lskbb
    loads a checkpoint written by PyTorch."""
    torch.manual_seed(5)
    t = BBNResNet32(5, lsk=True, in_ch=1, width=4).float()
    save_file({k: v.contiguous() for k, v in t.state_dict().items()}, path)
    print(f"{os.path.basename(path)}: {len(t.state_dict())} tensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", nargs="?", default=os.path.join(REPO, "tests", "fixtures", "golden"))
    ap.add_argument("--only", nargs="*", help="write only these files (names without .safetensors)")
    ap.add_argument("--gap-threshold", type=float, default=1e-4,
                    help="smallest accepted gap between the two largest values of a max, relative to the RMS")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    want = lambda name: not a.only or name in a.only  # noqa: E731
    for c in MODEL_CASES:
        if want(c["name"]):
            model_case(a.out_dir, c, a.gap_threshold)
    if want("ops"):
        ops_file(os.path.join(a.out_dir, "ops.safetensors"), 3, OPS_CONVS, a.gap_threshold)
    if want("ops_extra"):
        ops_file(os.path.join(a.out_dir, "ops_extra.safetensors"), 17, OPS_EXTRA_CONVS, a.gap_threshold)
    if want("torch_state_dict"):
        torch_state_dict(os.path.join(a.out_dir, "..", "torch_lsk_5cls_gray_w4.safetensors"))


if __name__ == "__main__":
    main()
