"""The PSFT objective against hand-computed numbers (fast: plain torch, no training).

loss = -mean over completion tokens of min(r, clip(r, 1 - eps, 1 + eps)), r = pi/pi_old.
With advantage 1 a ratio above 1 + eps is capped (zero gradient); below 1 - eps it is
not (min picks r), so a token the policy has made *less* likely is still pushed up.
"""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.training.losses import psft_loss


def log_pairs(ratios: list[float], old: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """logps whose ratios to ``old`` are exactly ``ratios``."""
    old_t = torch.tensor([old], dtype=torch.float64)
    logps = (old_t * torch.tensor([ratios], dtype=torch.float64)).log().requires_grad_(True)
    return logps, old_t.log()


def test_clipped_objective_matches_hand_computation():
    # ratios 2.0 (capped at 1.28), 1.0 (as is), 0.5 (below 1 - eps: min keeps 0.5)
    logps, old = log_pairs([2.0, 1.0, 0.5], [0.25, 0.2, 0.8])
    loss, stats = psft_loss(logps, old, torch.ones(1, 3), epsilon=0.28)
    assert loss.item() == pytest.approx(-(1.28 + 1.0 + 0.5) / 3)
    assert stats["clip_fraction"] == pytest.approx(1 / 3)
    assert stats["ratio_mean"] == pytest.approx((2.0 + 1.0 + 0.5) / 3)


def test_gradient_is_zero_where_the_ratio_is_capped():
    # d/dlogp of -r/N is -r/N; the capped token (r = 2 > 1.28) gets no gradient
    logps, old = log_pairs([2.0, 1.0, 0.5], [0.25, 0.2, 0.8])
    loss, _ = psft_loss(logps, old, torch.ones(1, 3), epsilon=0.28)
    loss.backward()
    assert logps.grad[0].tolist() == pytest.approx([0.0, -1.0 / 3, -0.5 / 3])


def test_at_refresh_it_is_plain_sft():
    # right after pi_old <- pi_theta every ratio is 1: the loss is -1 and the gradient is SFT's (-1/N per token)
    logps, old = log_pairs([1.0, 1.0], [0.3, 0.6])
    loss, stats = psft_loss(logps, old, torch.ones(1, 2))
    loss.backward()
    assert loss.item() == pytest.approx(-1.0)
    assert logps.grad[0].tolist() == pytest.approx([-0.5, -0.5])
    assert stats["clip_fraction"] == 0.0


def test_prompt_tokens_are_masked_and_num_tokens_divides():
    # only the last two positions are completion tokens; the first (r = 3) must not count
    logps, old = log_pairs([3.0, 1.1, 0.9], [0.1, 0.5, 0.5])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    loss, stats = psft_loss(logps, old, mask, epsilon=0.2)
    assert loss.item() == pytest.approx(-(1.1 + 0.9) / 2)
    assert stats["clip_fraction"] == 0.0
    # under gradient accumulation the divisor is the whole accumulated batch's token count
    loss_accum, _ = psft_loss(logps, old, mask, epsilon=0.2, num_tokens=8)
    assert loss_accum.item() == pytest.approx(-(1.1 + 0.9) / 8)


def test_epsilon_sets_the_cap():
    logps, old = log_pairs([1.5], [0.4])
    for eps, expected in ((0.1, 1.1), (0.28, 1.28), (0.6, 1.5)):
        loss, _ = psft_loss(logps, old, torch.ones(1, 1), epsilon=eps)
        assert loss.item() == pytest.approx(-expected), eps
    assert math.isfinite(psft_loss(logps, old, torch.zeros(1, 1))[0].item()), "no completion tokens: 0, not NaN"
