"""Loss for multi-label segmentation: BCE-with-logits plus soft Dice (both per class channel).

>>> import torch
>>> loss = BCEDiceLoss()
>>> float(loss(torch.full((1, 2, 4, 4), 20.0), torch.ones(1, 2, 4, 4))) < 0.01
True
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - mean over (batch, class) of the soft Dice of sigmoid(logits) against the target."""
    prob = torch.sigmoid(logits.float()).flatten(2)
    tgt = target.float().flatten(2)
    inter = (prob * tgt).sum(-1)
    denom = prob.sum(-1) + tgt.sum(-1)
    return 1.0 - ((2.0 * inter + smooth) / (denom + smooth)).mean()


class BCEDiceLoss(nn.Module):
    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return self.bce_weight * bce + self.dice_weight * soft_dice_loss(logits, target)
