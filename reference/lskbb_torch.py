"""PyTorch reference of the LSKBB model: CIFAR ResNet-32 with a Large Selective Kernel (LSK)
module in every basic block, as a bilateral-branch network (BBN).

The module tree fixes the parameter names: an lskbb checkpoint is exactly this model's
state_dict (`layer2.0.lsk.conv_spatial.weight`, `cb_block.bn2.running_var`, `fc.bias`, ...),
so it loads here with load_state_dict(strict=True), and the other way round.

`width` is the stem's and stage 1's channel count (16 in the paper's ResNet-32; stages 2 and 3
have twice and four times as many). Narrower widths keep the test fixtures small.

`biformer=True` adds BiFormer's bi-level routing attention (`bra_torch.py`) to the residual
branch of stage 3's blocks and both branch blocks: BiFormer-ResNet-32 (`layer3.0.bra.*`).

`cosine_scale` (LDAM's runs) replaces the fc by Cao et al.'s cosine classifier: fc.weight
alone, on the conventional branch's features for a single-branch model (`bilateral=False`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from bra_torch import BRA
from simam_torch import SimAM

PAPER_WIDTH = 16


class MaxGaps:
    """Records, for every max taken over a dimension, how far apart the two largest values
    are: gap = (top1 - top2) / RMS of the tensor. A float32 engine computes each value with
    an error of some 1e-6 of the tensor's scale; where the gap is that small, it may pick the
    other maximum, and the gradient takes another route than the reference's (a near-tie).
    Active inside `with MaxGaps() as gaps:`; each record keeps the tensor too, so a float32 run
    of the same inputs can be compared value by value (see gen_golden.py)."""

    active = None

    def __init__(self):
        self.records = []  # (where, smallest gap, the tensor, dim)

    def __enter__(self):
        MaxGaps.active = self
        return self

    def __exit__(self, *exc):
        MaxGaps.active = None

    @staticmethod
    def note(where, t, dim):
        rec = MaxGaps.active
        if rec is None or t.shape[dim] < 2:
            return
        with torch.no_grad():
            top = t.detach().topk(2, dim=dim).values
            gap = (top.select(dim, 0) - top.select(dim, 1)).min()
            rms = t.detach().pow(2).mean().sqrt().clamp_min(1e-300)
            rec.records.append((where, float(gap / rms), t.detach().clone(), dim))

    def smallest(self):
        return min(self.records, key=lambda r: r[1]) if self.records else None


class LSKBlock(nn.Module):
    """Li et al. 2023 LSK block with two decomposed kernels (5x5 depthwise, then 7x7
    depthwise with dilation 3), then a spatial selection from the channel mean and max."""

    def __init__(self, dim):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim // 2, 1)
        self.conv2 = nn.Conv2d(dim, dim // 2, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(dim // 2, dim, 1)
        self.where = "lsk"  # set to the module's name by BBNResNet32, for MaxGaps reports

    def forward(self, x):
        attn1 = self.conv0(x)
        attn2 = self.conv_spatial(attn1)
        attn1 = self.conv1(attn1)
        attn2 = self.conv2(attn2)
        attn = torch.cat([attn1, attn2], dim=1)
        avg_attn = torch.mean(attn, dim=1, keepdim=True)
        MaxGaps.note(self.where, attn, 1)
        max_attn, _ = torch.max(attn, dim=1, keepdim=True)
        agg = torch.cat([avg_attn, max_attn], dim=1)
        sig = self.conv_squeeze(agg).sigmoid()
        attn = attn1 * sig[:, 0:1] + attn2 * sig[:, 1:2]
        attn = self.conv(attn)
        return x * attn


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block (BBN's resnet_cifar.py, option-A shortcut). With lsk=True the
    LSK module sits where the residual branch meets the skip connection:
    y = relu(lsk(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x)). With simam=True SimAM follows
    conv2, as in the official CIFAR ResNet (github.com/ZjjConan/SimAM, networks/cifar/block.py):
    y = relu(bn2(simam(conv2(relu(bn1(conv1(x)))))) + shortcut(x)); it has no parameters."""

    def __init__(self, cin, cout, stride=1, lsk=False, bra=False, simam=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad_ch = stride, (cout - cin) // 2
        self.lsk = LSKBlock(cout) if lsk else None
        self.simam = SimAM() if simam else None
        # BiFormer-ResNet-32: bi-level routing attention as a residual sub-layer (bra_torch.py).
        self.bra = BRA(cout) if bra else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.simam is not None:
            out = self.simam(out)
        out = self.bn2(out)
        if self.lsk is not None:
            out = self.lsk(out)
        if self.bra is not None:
            out = out + self.bra(out)
        sc = x
        if self.stride != 1 or self.pad_ch:  # option A: subsample, zero-pad the channels
            sc = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad_ch, self.pad_ch))
        return F.relu(out + sc)


class NormedLinear(nn.Module):
    """Cao et al. (2019)'s cosine classifier: z_k = cos(x, w_k), no bias. Its weight is
    stored [classes, in] (nn.Linear's layout; theirs is the transpose), each class vector
    initialised U(-1, 1) and scaled to unit norm as theirs."""

    def __init__(self, fin, classes):
        super().__init__()
        w = torch.empty(classes, fin).uniform_(-1, 1)
        self.weight = nn.Parameter(w / w.norm(dim=1, keepdim=True))

    def forward(self, x):
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


class BBNResNet32(nn.Module):
    """ResNet-32 (3 stages of 5 blocks, widths w/2w/4w); the last block of stage 3 is two
    blocks, cb_block (conventional branch) and rb_block (re-balancing branch). simam=True puts
    SimAM in every block (SimAM-ResNet-32; with lsk=False)."""

    def __init__(self, num_classes, lsk=True, in_ch=3, width=PAPER_WIDTH, bilateral=True,
                 cosine_scale=None, biformer=False, simam=False):
        super().__init__()
        w = width
        self.bilateral = bilateral
        self.cosine_scale = cosine_scale
        self.conv1 = nn.Conv2d(in_ch, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        sa = simam  # SimAM-ResNet-32: SimAM in every block
        self.layer1 = nn.Sequential(*[BasicBlock(w, w, 1, lsk, simam=sa) for _ in range(5)])
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2, lsk, simam=sa),
                                    *[BasicBlock(2 * w, 2 * w, 1, lsk, simam=sa) for _ in range(4)])
        b = biformer  # BiFormer-ResNet-32: routing attention in the last stage's blocks
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2, lsk, b, sa),
                                    *[BasicBlock(4 * w, 4 * w, 1, lsk, b, sa) for _ in range(3)])
        self.cb_block = BasicBlock(4 * w, 4 * w, 1, lsk, b, sa)
        self.rb_block = BasicBlock(4 * w, 4 * w, 1, lsk, b, sa)
        if cosine_scale is None:
            self.fc = nn.Linear(8 * w, num_classes, bias=True)
        else:
            self.fc = NormedLinear((8 if bilateral else 4) * w, num_classes)
        # BBN's init (kaiming_normal_, fan_in) for the ResNet's convs and the fc; the LSK
        # modules keep PyTorch's default Conv2d init (kaiming_uniform_ a=sqrt(5), uniform
        # bias): kaiming_normal_ on them too makes training diverge in the first epoch.
        lsk_convs = {id(c) for m in self.modules() if isinstance(m, (LSKBlock, BRA)) for c in m.modules()}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in lsk_convs:
                nn.init.kaiming_normal_(m.weight)
        for name, m in self.named_modules():
            if isinstance(m, LSKBlock):
                m.where = name

    def features(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x_c, x_r, alpha):
        """Bilateral forward: x_c from the uniform sampler, x_r from the reversed sampler.
        Logits z = fc(2 * cat(alpha * f_c, (1 - alpha) * f_r)), as BBN's combiner does."""
        f_c = F.adaptive_avg_pool2d(self.cb_block(self.features(x_c)), 1).flatten(1)
        f_r = F.adaptive_avg_pool2d(self.rb_block(self.features(x_r)), 1).flatten(1)
        return self.fc(2 * torch.cat([alpha * f_c, (1 - alpha) * f_r], dim=1))

    def forward_single(self, x):
        """Single-branch forward: fc(cat(2 f_c, 0)), or the cosines of f_c."""
        f_c = F.adaptive_avg_pool2d(self.cb_block(self.features(x)), 1).flatten(1)
        if self.cosine_scale is not None:
            return self.fc(f_c)
        return self.fc(torch.cat([2 * f_c, torch.zeros_like(f_c)], dim=1))

    def infer(self, x):
        """Inference: both branches see the same image, features concatenated unweighted (the
        conventional branch alone for a single-branch model); cosines scaled by s."""
        if self.bilateral:
            f = self.features(x)
            f_c = F.adaptive_avg_pool2d(self.cb_block(f), 1).flatten(1)
            f_r = F.adaptive_avg_pool2d(self.rb_block(f), 1).flatten(1)
            z = self.fc(torch.cat([f_c, f_r], dim=1))
        else:
            z = self.forward_single(x)
        return z if self.cosine_scale is None else self.cosine_scale * z
