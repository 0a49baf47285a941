"""PyTorch reference of SimAM, the attention module of SimAM-ResNet-32.

`SimAM` follows the official code (github.com/ZjjConan/SimAM,
networks/attentions/simam_module.py; Yang et al., "SimAM: A Simple, Parameter-Free Attention
Module for Convolutional Neural Networks", ICML 2021).
"""
import torch
import torch.nn as nn

SIMAM_LAMBDA = 1e-4


class SimAM(nn.Module):
    """y = x * sigmoid((x - mu)^2 / (4 (sum (x - mu)^2 / (H W - 1) + lambda)) + 0.5) per
    (n, c) plane: the inverse of the minimal energy (eq. 6 of the paper) through a sigmoid."""

    def __init__(self, e_lambda=SIMAM_LAMBDA):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
        n = x.shape[2] * x.shape[3] - 1
        x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = x_minus_mu_square / (4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        return x * torch.sigmoid(y)
