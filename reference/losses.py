"""The losses of LSKBB and its baselines (paper eq. 13-20), on logits [B, C] and labels [B].

Every loss is a mean over the batch. `theta` is the dynamic weight of the focal term,
theta = 1 - (T / T_max)^2 (eq. 18, the same parabola as BBN's alpha)."""
import torch
import torch.nn.functional as F


def adjust(t, t_max):
    """The parabolic decay 1 - (t / t_max)^2 of BBN's alpha and of DFLCE's theta."""
    return 1.0 - (t / t_max) ** 2


def ce(logits, y):
    return F.cross_entropy(logits, y)


def focal(logits, y, gamma=2.0):
    """Focal loss (Lin et al. 2017): mean of -(1 - p_y)^gamma * log p_y."""
    logp = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


def cb_weights(counts, beta=0.9999):
    """Class-balanced weights (Cui et al. 2019): (1 - beta) / (1 - beta^n_j), scaled to sum to
    the number of classes."""
    n = torch.tensor(counts, dtype=torch.float64)
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return w / w.sum() * len(counts)


def cb_ce(logits, y, cbw):
    """Class-balanced softmax cross-entropy: PyTorch's weighted mean sum w_y * (-log p_y) / sum w_y."""
    return F.cross_entropy(logits, y, weight=cbw.to(logits.dtype))


def dflce(logits, y, theta, gamma=2.0):
    """DFLCE: theta * focal + (1 - theta) * CE."""
    return theta * focal(logits, y, gamma) + (1 - theta) * ce(logits, y)


def dflcsce(logits, y, theta, cbw, gamma=2.0):
    """DFLCSCE: theta * focal + (1 - theta) * class-balanced CE."""
    return theta * focal(logits, y, gamma) + (1 - theta) * cb_ce(logits, y, cbw)


def by_name(name, theta=1.0, gamma=2.0, counts=None, beta=0.9999):
    """The loss `name` (ce, focal, cb-ce, dflce, dflcsce) as a function of (logits, y)."""
    if name == "ce":
        return ce
    if name == "focal":
        return lambda z, y: focal(z, y, gamma)
    if name == "dflce":
        return lambda z, y: dflce(z, y, theta, gamma)
    if name in ("cb-ce", "dflcsce"):
        if counts is None:
            raise ValueError(f"loss {name} needs the class counts")
        w = cb_weights(counts, beta)
        if name == "cb-ce":
            return lambda z, y: cb_ce(z, y, w)
        return lambda z, y: dflcsce(z, y, theta, w, gamma)
    raise ValueError(f"loss '{name}' is not one of ce, focal, cb-ce, dflce, dflcsce")


def bbn_loss(loss_fn, logits, y_c, y_r, alpha):
    """BBN's bilateral loss: alpha * L(z, y_c) + (1 - alpha) * L(z, y_r) on the mixed logits."""
    return alpha * loss_fn(logits, y_c) + (1 - alpha) * loss_fn(logits, y_r)
