"""DBNet loss: L = prob_weight * L_s + alpha * L_b + beta * L_t (SPEC: "Loss").

All inputs are ``(N, 1, H, W)`` or ``(N, H, W)`` tensors; losses are computed in float32 even under
autocast. Defaults follow the authors' code: 5 x BCE-OHEM(P) + 1 x dice(B) + 10 x L1(T); the paper's
formula is ``prob_weight=1, binary_loss="bce"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-6


def balanced_bce(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
                 negative_ratio: float = 3.0) -> torch.Tensor:
    """BCE with online hard negative mining: all positives, the hardest negatives up to
    ``negative_ratio`` x the positives (paper: 3)."""
    pred, gt, mask = pred.float().flatten(), gt.float().flatten(), mask.float().flatten()
    positive = gt * mask
    negative = (1.0 - gt) * mask
    pos_count = int(positive.sum().item())
    neg_count = min(int(negative.sum().item()), int(pos_count * negative_ratio))
    pred = pred.clamp(EPS, 1 - EPS)  # explicit BCE: F.binary_cross_entropy refuses CUDA autocast
    loss = -(gt * torch.log(pred) + (1.0 - gt) * torch.log(1.0 - pred))
    pos_loss = (loss * positive).sum()
    if neg_count > 0:
        neg_loss = torch.topk(loss * negative, neg_count, sorted=False).values.sum()
    else:
        neg_loss = loss.new_zeros(())
    return (pos_loss + neg_loss) / (pos_count + neg_count + EPS)


def dice_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    pred, gt, mask = pred.float().flatten(), gt.float().flatten(), mask.float().flatten()
    intersection = (pred * gt * mask).sum()
    union = (pred * mask).sum() + (gt * mask).sum() + EPS
    return 1.0 - 2.0 * intersection / union


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    pred, target, mask = pred.float().flatten(), target.float().flatten(), mask.float().flatten()
    return ((pred - target).abs() * mask).sum() / (mask.sum() + EPS)


@dataclass(frozen=True)
class LossConfig:
    prob_weight: float = 5.0  # authors' code; the paper's formula has 1
    alpha: float = 1.0  # weight of L_b (paper)
    beta: float = 10.0  # weight of L_t (paper)
    binary_loss: str = "dice"  # "dice" (authors' code) or "bce" (paper text)
    negative_ratio: float = 3.0


def db_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
            config: LossConfig = LossConfig()) -> dict[str, torch.Tensor]:
    """outputs: ``prob``, ``thresh``, ``binary``; batch: ``gt``, ``mask``, ``thresh_map``,
    ``thresh_mask``. Returns ``loss`` (the total) and its parts ``loss_prob``, ``loss_binary``,
    ``loss_thresh``."""
    gt, mask = batch["gt"], batch["mask"]
    prob = outputs["prob"].squeeze(1)
    loss_prob = balanced_bce(prob, gt, mask, config.negative_ratio)
    parts = {"loss_prob": loss_prob}
    total = config.prob_weight * loss_prob
    if "binary" in outputs:
        binary = outputs["binary"].squeeze(1)
        if config.binary_loss == "dice":
            loss_binary = dice_loss(binary, gt, mask)
        elif config.binary_loss == "bce":
            loss_binary = balanced_bce(binary, gt, mask, config.negative_ratio)
        else:
            raise ValueError(f"binary_loss must be 'dice' or 'bce', not {config.binary_loss!r}")
        loss_thresh = masked_l1(outputs["thresh"].squeeze(1), batch["thresh_map"], batch["thresh_mask"])
        total = total + config.alpha * loss_binary + config.beta * loss_thresh
        parts.update(loss_binary=loss_binary, loss_thresh=loss_thresh)
    parts["loss"] = total
    return parts
