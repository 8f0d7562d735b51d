"""DBNet losses (SPEC "Loss") on small cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dbcli.training.losses import LossConfig, balanced_bce, db_loss, dice_loss, masked_l1


def bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_balanced_bce_keeps_at_most_three_negatives_per_positive():
    # 2 positives, 8 negatives: the 6 hardest negatives (highest predicted probability) count
    pred = torch.tensor([0.9, 0.6, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    gt = torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    mask = torch.ones(10)
    expected = (bce(0.9, 1) + bce(0.6, 1) + sum(bce(p, 0) for p in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4))) / 8
    assert balanced_bce(pred, gt, mask).item() == pytest.approx(expected, rel=1e-5)
    # the ratio is a parameter: 1 negative per positive
    expected1 = (bce(0.9, 1) + bce(0.6, 1) + bce(0.9, 0) + bce(0.8, 0)) / 4
    assert balanced_bce(pred, gt, mask, negative_ratio=1.0).item() == pytest.approx(expected1, rel=1e-5)


def test_balanced_bce_gradient_reaches_only_the_mined_negatives():
    pred = torch.tensor([0.9, 0.6, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], requires_grad=True)
    gt = torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    balanced_bce(pred, gt, torch.ones(10)).backward()
    nonzero = (pred.grad != 0).tolist()
    assert nonzero == [True] * 8 + [False, False]


def test_balanced_bce_respects_the_mask_and_few_negatives():
    pred = torch.tensor([[0.7, 0.2], [0.99, 0.4]])  # (H, W) maps work too
    gt = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # the 0.99 false positive is masked out
    # 1 positive, 2 unmasked negatives (< 3): both count
    expected = (bce(0.7, 1) + bce(0.2, 0) + bce(0.4, 0)) / 3
    assert balanced_bce(pred, gt, mask).item() == pytest.approx(expected, rel=1e-5)
    # masked positives are not positives
    assert balanced_bce(pred, gt, torch.tensor([[0.0, 1.0], [1.0, 1.0]])).item() == pytest.approx(0.0)


def test_balanced_bce_is_finite_at_saturation():
    pred = torch.tensor([0.0, 1.0, 1.0, 0.0])
    gt = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = balanced_bce(pred, gt, torch.ones(4))
    assert torch.isfinite(loss) and loss.item() > 5


def test_dice_loss():
    gt = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mask = torch.ones(4)
    assert dice_loss(gt.clone(), gt, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert dice_loss(torch.zeros(4), gt, mask).item() == pytest.approx(1.0)
    # intersection 0.5, sum(pred) = 1, sum(gt) = 2: 1 - 2 * 0.5 / 3
    pred = torch.tensor([0.5, 0.5, 0.0, 0.0])
    assert dice_loss(pred, gt, mask).item() == pytest.approx(1 - 1 / 3, rel=1e-5)
    # masking out the wrong pixel: intersection 0.5, sum(pred) 0.5, sum(gt) 2
    assert dice_loss(pred, gt, torch.tensor([1.0, 0.0, 1.0, 1.0])).item() == pytest.approx(1 - 1 / 2.5, rel=1e-5)
    # masking out a text pixel: intersection 0.5, sum(pred) 1, sum(gt) 1
    assert dice_loss(pred, gt, torch.tensor([1.0, 1.0, 0.0, 1.0])).item() == pytest.approx(0.5, rel=1e-5)


def test_masked_l1():
    pred = torch.tensor([0.3, 0.5, 0.9])
    target = torch.tensor([0.3, 0.7, 0.1])
    assert masked_l1(pred, target, torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(0.1, rel=1e-5)
    assert masked_l1(pred, target, torch.ones(3)).item() == pytest.approx(1.0 / 3, rel=1e-5)
    assert masked_l1(pred, target, torch.zeros(3)).item() == pytest.approx(0.0)


def _case():
    torch.manual_seed(0)
    prob, thresh = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    outputs = {"prob": prob, "thresh": thresh, "binary": torch.sigmoid(50 * (prob - thresh))}
    gt = (torch.rand(2, 8, 8) > 0.7).float()
    batch = {"gt": gt, "mask": torch.ones(2, 8, 8), "thresh_map": torch.rand(2, 8, 8) * 0.4 + 0.3,
             "thresh_mask": (torch.rand(2, 8, 8) > 0.5).float()}
    return outputs, batch


def test_db_loss_combines_the_parts_with_the_configured_weights():
    outputs, batch = _case()
    parts = db_loss(outputs, batch)  # authors' defaults: 5 x BCE(P) + 1 x dice(B) + 10 x L1(T)
    ls = balanced_bce(outputs["prob"].squeeze(1), batch["gt"], batch["mask"])
    lb = dice_loss(outputs["binary"].squeeze(1), batch["gt"], batch["mask"])
    lt = masked_l1(outputs["thresh"].squeeze(1), batch["thresh_map"], batch["thresh_mask"])
    assert parts["loss_prob"].item() == pytest.approx(ls.item())
    assert parts["loss_binary"].item() == pytest.approx(lb.item())
    assert parts["loss_thresh"].item() == pytest.approx(lt.item())
    assert parts["loss"].item() == pytest.approx(5 * ls.item() + lb.item() + 10 * lt.item(), rel=1e-5)
    # the paper's formula: L_s + 1 x BCE(B) + 10 x L1(T)
    paper = db_loss(outputs, batch, LossConfig(prob_weight=1.0, binary_loss="bce"))
    lb_bce = balanced_bce(outputs["binary"].squeeze(1), batch["gt"], batch["mask"])
    assert paper["loss"].item() == pytest.approx(ls.item() + lb_bce.item() + 10 * lt.item(), rel=1e-5)
    custom = db_loss(outputs, batch, LossConfig(prob_weight=2.0, alpha=0.5, beta=3.0))
    assert custom["loss"].item() == pytest.approx(2 * ls.item() + 0.5 * lb.item() + 3 * lt.item(), rel=1e-5)


def test_db_loss_with_the_probability_map_only():
    outputs, batch = _case()
    parts = db_loss({"prob": outputs["prob"]}, batch)
    assert set(parts) == {"loss", "loss_prob"}
    assert parts["loss"].item() == pytest.approx(5 * parts["loss_prob"].item())


def test_db_loss_rejects_an_unknown_binary_loss():
    outputs, batch = _case()
    with pytest.raises(ValueError, match="dice"):
        db_loss(outputs, batch, LossConfig(binary_loss="focal"))
