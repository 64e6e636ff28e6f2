"""Proximal SFT (PSFT): supervised fine-tuning with a PPO-style trust region.

PSFT reads SFT as policy gradient with advantage 1 on every dataset token and
clips the probability ratio against an older copy of the policy, as PPO does::

    r_t    = pi_theta(token_t) / pi_old(token_t)
    loss   = -mean over completion tokens of min(r_t, clip(r_t, 1 - eps, 1 + eps))

With advantage 1 the clip only bites from above: once a token's probability has
risen by more than ``1 + eps`` over ``pi_old`` its gradient is zero, so no token is
pushed arbitrarily far in one stretch of updates. That keeps the entropy from
collapsing and leaves the model better prepared for later RL (KNOWLEDGE.md,
section 6). ``pi_old`` is a frozen copy of the policy, refreshed every
``refresh_every`` optimizer steps (default 8); right after a refresh ``r = 1`` and
the gradient equals plain SFT's (dropout is turned off so that this holds exactly).

Two pieces:

* :func:`psft_loss`, the clipped objective on per-token log-probabilities, a plain
  function unit-tested against a hand-computed example;
* :func:`psft_trainer_class`, a small :class:`trl.SFTTrainer` subclass that keeps
  ``pi_old`` and overrides ``compute_loss`` (TRL's ``compute_loss_func`` hook sees
  only the logits and labels, not the inputs that ``pi_old`` needs). Everything
  else (data, collation, LoRA, checkpoints) is SFTTrainer's.

Known gaps: ``pi_old`` is a full copy of the model in memory (of the adapter-wrapped
model under LoRA); DeepSpeed ZeRO-3 and FSDP shard parameters, so the copy is not
supported there (DDP is). A resumed run starts a fresh ``pi_old`` at the resume step.

Example:
    >>> import math, torch
    >>> logps = torch.log(torch.tensor([[2 * 0.25, 0.2, 0.5 * 0.8]]))
    >>> old = torch.log(torch.tensor([[0.25, 0.2, 0.8]]))   # ratios 2, 1, 0.5
    >>> loss, stats = psft_loss(logps, old, torch.ones(1, 3), epsilon=0.28)
    >>> round(loss.item(), 4)  # -(1.28 + 1 + 0.5) / 3
    -0.9267
"""

from __future__ import annotations

import copy
import functools
from typing import Any


def psft_loss(
    logps: Any, old_logps: Any, mask: Any, epsilon: float = 0.28, num_tokens: Any = None
) -> tuple[Any, dict[str, float]]:
    """The PSFT loss: minus the clipped ratio objective with advantage 1, per completion token.

    Args:
        logps: ``log pi_theta(token)`` per position, shape ``(batch, length)``, with grad.
        old_logps: ``log pi_old(token)`` at the same positions (treated as constants).
        mask: 1 where the position is a completion token to train on, else 0.
        epsilon: The clip range: ratios are clipped to ``[1 - epsilon, 1 + epsilon]``.
        num_tokens: What to divide the summed objective by; default ``mask.sum()``.
            Under gradient accumulation, pass the token count of the whole
            accumulated batch (TRL's ``num_items_in_batch``), so every token weighs
            the same whatever micro-batch it falls in.

    Returns:
        ``(loss, stats)``: the scalar loss, and ``stats`` with ``clip_fraction`` (share
        of tokens whose ratio is above ``1 + epsilon``, i.e. with zero gradient) and
        ``ratio_mean``.
    """
    import torch

    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps.detach())
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon)
    objective = torch.minimum(ratio, clipped)  # times the advantage, 1
    denominator = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, device=logps.device)
    loss = -(objective * mask).sum() / denominator.clamp(min=1)
    with torch.no_grad():
        count = mask.sum().clamp(min=1)
        stats = {
            "clip_fraction": float(((ratio > 1.0 + epsilon).to(mask.dtype) * mask).sum() / count),
            "ratio_mean": float((ratio * mask).sum() / count),
        }
    return loss, stats


@functools.cache
def psft_trainer_class() -> type:
    """The ``PsftTrainer`` class (built on first use: importing TRL takes seconds).

    ``PsftTrainer(*sft_trainer_args, epsilon=0.28, refresh_every=8, **sft_trainer_kwargs)``
    trains like :class:`trl.SFTTrainer` but with :func:`psft_loss`. It logs
    ``psft/clip_fraction``, ``psft/ratio_mean`` and ``entropy`` next to the loss.
    """
    import torch
    from trl import SFTTrainer
    from trl.trainer.utils import disable_dropout_in_model

    class PsftTrainer(SFTTrainer):
        def __init__(self, *args: Any, epsilon: float = 0.28, refresh_every: int = 8, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Dropout off (as TRL's RL trainers do): right after a refresh r must be exactly 1, not noise
            disable_dropout_in_model(self.model)
            self.psft_epsilon = epsilon
            self.psft_refresh_every = refresh_every
            self._old_model: Any = None
            self._old_step = -1

        def _refresh_old_policy(self) -> None:
            """pi_old <- pi_theta (a frozen copy; later refreshes copy the weights in place)."""
            policy = self.accelerator.unwrap_model(self.model)
            if self._old_model is None:
                self._old_model = copy.deepcopy(policy)  # keeps the fused LM head TRL patched in
                self._old_model.eval()
                self._old_model.requires_grad_(False)
            else:
                self._old_model.load_state_dict(policy.state_dict())
            self._old_step = self.state.global_step

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            mode = "train" if self.model.training else "eval"
            stale = self.state.global_step - self._old_step >= self.psft_refresh_every
            if self._old_model is None or (mode == "train" and stale):
                self._refresh_old_policy()
            inputs["use_cache"] = False
            # The fused head returns log pi(label) per position (zero where labels are -100)
            outputs = model(**inputs, fused_lm_head=True)
            with torch.no_grad():
                old = self._old_model(**inputs, fused_lm_head=True)
            loss, stats = psft_loss(
                outputs.log_probs, old.log_probs, outputs.label_mask, self.psft_epsilon, num_items_in_batch
            )
            # As SFTTrainer: num_items_in_batch counts every rank's tokens and DDP averages gradients
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            self._metrics[mode]["psft/clip_fraction"].append(stats["clip_fraction"])
            self._metrics[mode]["psft/ratio_mean"].append(stats["ratio_mean"])
            if outputs.entropy is not None:
                valid = outputs.label_mask.sum().clamp(min=1)
                self._metrics[mode]["entropy"].append((outputs.entropy.detach().sum() / valid).item())
            return (loss, outputs) if return_outputs else loss

    return PsftTrainer
