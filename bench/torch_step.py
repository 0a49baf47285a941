"""PyTorch baseline of `lskbb bench`: the same bilateral training step (both branches forward,
loss, backward, SGD) on random data, timed on the GPU. Prints one JSON line.

usage: python3 bench/torch_step.py [--image-size 224] [--batch-size 32]
                                   [--lsk | --plain] [--steps 10] [--warmup 2] [--device cuda]

Same model (BBNResNet32 from reference/lskbb_torch.py, 8 classes, 3 input channels), same
step as the Rust engine's Trainer: alpha 0.5, loss alpha*L(z, y_c) + (1-alpha)*L(z, y_r) with
L = DFLCE (theta 0.5, gamma 2) for --lsk (method lskbb) and cross-entropy for --plain (method
bbn), SGD lr 0.05 momentum 0.9 weight decay 2e-4. float32 throughout, TF32 off.
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--ref", default=os.path.join(here, "..", "reference"),
                    help="directory holding the PyTorch reference (default: reference/)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--lsk", dest="lsk", action="store_true", default=True)
    g.add_argument("--plain", dest="lsk", action="store_false")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    sys.path.insert(0, os.path.abspath(args.ref))
    from lskbb_torch import BBNResNet32
    from losses import dflce
    from step import bilateral_step, sgd

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    classes, channels, alpha, theta, gamma = 8, 3, 0.5, 0.5, 2.0
    b, s = args.batch_size, args.image_size

    model = BBNResNet32(classes, lsk=args.lsk, in_ch=channels).to(dev).float().train()
    opt = sgd(model)
    if args.lsk:
        loss_fn = lambda z, y: dflce(z, y, theta, gamma)
    else:
        loss_fn = F.cross_entropy
    x_c = torch.randn(b, channels, s, s, device=dev)
    x_r = torch.randn(b, channels, s, s, device=dev)
    y_c = torch.randint(0, classes, (b,), device=dev)
    y_r = torch.randint(0, classes, (b,), device=dev)

    def step():
        bilateral_step(model, x_c, y_c, x_r, y_r, alpha, loss_fn, opt)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    ms = (time.perf_counter() - t0) * 1e3 / max(args.steps, 1)
    print(json.dumps({
        "impl": "torch",
        "device": torch.cuda.get_device_name(dev) if cuda else str(dev),
        "torch": torch.__version__,
        "image_size": s,
        "batch": b,
        "lsk": args.lsk,
        "steps": args.steps,
        "warmup": args.warmup,
        "ms_per_step": ms,
        "images_per_s": 2 * b * 1e3 / ms,
        "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if cuda else None,
    }), flush=True)


if __name__ == "__main__":
    main()
