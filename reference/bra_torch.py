"""BiFormer's bi-level routing attention as lskbb reads it (`src/model/bra.rs`): Zhu et al.,
"BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023, their
`BiLevelRoutingAttention` (github.com/rayleizhu/BiFormer, ops/bra_legacy.py) with
kv_downsample_mode 'identity', param_routing and diff_routing off, mul_weight 'none' (their
released models' settings), on [N, C, H, W] maps, its token-wise Linear layers as 1x1 convs:

    q, k, v = qkv(x).split(C)                     regions: 'n c (j h) (i w) -> n (j i) (h w) c'
    idx = topk over rho of (scale * mean_r q) . (mean_rho k)      (detached: routing only)
    o_r = softmax(scale * q_r K_idx^T) V_idx, head by head       out = wo(o + lepe(v))

scale = C ** -0.5 (their qk_dim ** -0.5), lepe a 5x5 depthwise conv (side_dwconv 5). The
grid is the largest g <= 7 (their n_win) dividing both sides (`grid_for`), where BiFormer
pads to a multiple of 7.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

HEAD_DIM = 32
TOPK = 4


def grid_for(h, w):
    return next(g for g in range(7, 0, -1) if h % g == 0 and w % g == 0)


def to_regions(t, g):
    """[N, C, H, W] -> [N, g*g, (H/g)*(W/g), C]: einops 'n c (j h) (i w) -> n (j i) (h w) c'."""
    n, c, h, w = t.shape
    t = t.reshape(n, c, g, h // g, g, w // g)
    return t.permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, (h // g) * (w // g), c)


def from_regions(t, g, h, w):
    """The inverse of to_regions."""
    n, _, _, c = t.shape
    t = t.reshape(n, g, g, h // g, w // g, c)
    return t.permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)


class BRA(nn.Module):
    def __init__(self, dim, heads=None, topk=TOPK):
        super().__init__()
        self.dim, self.heads, self.topk = dim, heads or max(1, dim // HEAD_DIM), topk
        self.scale = dim ** -0.5
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.wo = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        g = grid_for(h, w)
        q, k, v = self.qkv(x).split(c, dim=1)
        qr, kr, vr = to_regions(q, g), to_regions(k, g), to_regions(v, g)   # [N, R, w2, C]
        r, w2 = g * g, qr.shape[2]
        # TopkRouting on the detached region means (diff_routing off).
        logit = (qr.mean(2).detach() * self.scale) @ kr.mean(2).detach().transpose(-2, -1)
        _, idx = torch.topk(logit, k=min(self.topk, r), dim=-1)             # [N, R, k]
        kk = idx.shape[-1]
        # KVGather: every region's routed regions' pixels, [N, R, k, w2, C].
        sel = idx[:, :, :, None, None].expand(-1, -1, -1, w2, c)

        def gather(t):
            return torch.gather(t[:, None].expand(-1, r, -1, -1, -1), 2, sel)

        m, cw = self.heads, c // self.heads
        ks = gather(kr).reshape(n, r, kk * w2, m, cw).permute(0, 1, 3, 2, 4)  # [N, R, m, k*w2, cw]
        vs = gather(vr).reshape(n, r, kk * w2, m, cw).permute(0, 1, 3, 2, 4)
        qs = qr.reshape(n, r, w2, m, cw).permute(0, 1, 3, 2, 4)              # [N, R, m, w2, cw]
        attn = torch.softmax((qs * self.scale) @ ks.transpose(-2, -1), dim=-1)
        o = (attn @ vs).permute(0, 1, 3, 2, 4).reshape(n, r, w2, c)
        return self.wo(from_regions(o, g, h, w) + self.lepe(v))
