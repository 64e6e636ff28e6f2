"""The doctor's rules: practitioners' diagnoses (KNOWLEDGE.md section 5) applied to one history.

Each rule reads the curves it needs from a :class:`~pipelines.doctor.history.History` and
returns a :class:`Finding` (evidence, likely cause, the fix as a concrete setting, a
severity) or nothing. A rule that applies to the stage's kind but whose metrics were not
logged says so ("not enough data", severity ``info``): it never guesses.

Curves are compared by window: the mean of the first and of the last quarter of the
logged steps (at least :data:`MIN_POINTS` points). The thresholds are constants below,
set on induced failures and healthy runs of a small model (``benchmarks/doctor_induced.py``,
seed 0) and reported on another seed.

=====================  ==========================  =====================================
rule                   kinds                       reads
=====================  ==========================  =====================================
kl_too_weak            grpo, rloo                  kl, reward
kl_too_strong          grpo, rloo                  kl, reward, frac_reward_zero_std
repetition             every policy kind           completions/distinct(_2), checkpoints
length_drift           every policy kind           completions/mean_length, checkpoints
entropy_collapse       grpo, rloo                  entropy
reward_never_rises     grpo, rloo                  reward, frac_reward_zero_std, probe
loss_spikes            every kind                  loss, grad_norm
loss_diverges          sft, psft, dpo, rm          loss
dpo_beta_too_high      dpo                         rewards/margins, beta
dpo_beta_too_low       dpo                         loss, logps/chosen, checkpoints
loss_vs_score          sft, psft, dpo, rm          loss, checkpoint scores
=====================  ==========================  =====================================
"""

from __future__ import annotations

import itertools
import math
import statistics

from pipelines.doctor.findings import (
    REWARD_FLAT,
    Finding,
    Rule,
    change,
    enough,
    evidence,
    finding,
    missing,
    num,
    rose,
    windows,
)
from pipelines.doctor.history import History

RL_KINDS = ("grpo", "rloo")
POLICY = ("sft", "psft", "dpo", "grpo", "rloo")
ALL = (*POLICY, "reward_model")
#: KL (nats per token) above which a rising KL means the penalty is too weak; below: "flat".
KL_HIGH, KL_FLAT = 0.05, 0.002
#: KL (nats per token) at which the policy has left the reference whatever the reward does.
KL_EXPLODES = 1.0
#: KL (nats per token) held over the second half of training that means the penalty holds nothing,
#: even when it got there within the first quarter (so the quarters compare high with high).
KL_RUNAWAY = 0.3
#: The last quarter's distinct share under this fraction of the first quarter's: collapse.
DISTINCT_DROP = 0.5
#: Mean within-text distinct-2 under this: completions repeat themselves.
REPEAT_FLOOR = 0.5
#: Length ratio (last / first quarter) beyond which lengths drift, and the least change that counts.
LENGTH_RATIO, LENGTH_MIN_CHANGE = 1.8, 3.0
#: Entropy rising this many times over its start while the reward falls: output turned to noise.
ENTROPY_EXPLODES = 2.0
#: Entropy falling under this share of its start within the first half of training.
ENTROPY_DROP = 0.3
#: A loss step this many times the median of the five before it (and above the run's scale) is a spike.
SPIKE_RATIO = 2.5
#: A single loss spike this many times the steps before it is a warning (a smaller one alone, a note).
BIG_SPIKE = 4.0
#: A gradient norm this many times the median of the five steps before it is a spike.
GRAD_SPIKE = 20.0
#: The last checkpoint's score this far under the best one means quality fell.
SCORE_DROP = 0.08
#: DPO: the policy's log-ratio margin (margins / beta, nats) under this after training: it barely moved.
DPO_MIN_MOVE = 1.5
#: DPO: a last-quarter loss above this share of log 2 (chance) while the policy moved past
#: DPO_BIG_MOVE nats means beta * margin stays tiny: beta is too low to tie the policy to its reference.
DPO_NEAR_CHANCE, DPO_BIG_MOVE = 0.95, 2.0
#: DPO: the chosen answers' log-probability falling by more than this (nats): the policy drifted off them.
DPO_CHOSEN_FALL = 5.0


# ---- online RL: KL, reward, entropy ----


def kl_too_weak(h: History) -> Finding | None:
    kl, reward = h.series("kl"), h.series("reward")
    if not enough(kl):
        why = "kl (TRL logs it only when beta > 0; this run has beta 0)" if h.hyper.get("beta") == 0 else "kl"
        return missing(h, "kl_too_weak", why)
    if not enough(reward):
        return missing(h, "kl_too_weak", "reward")
    k0, k1 = windows(kl)
    r0, r1 = windows(reward)
    peak = max(v for _, v in kl)
    held = statistics.median(v for _, v in kl[len(kl) // 2 :])
    # Two shapes: the KL climbs with a reward that really rises (the policy chases the reward
    # away from the reference), or it settles high whatever the reward does. A lone KL peak is
    # not evidence: healthy tiny runs reach 1-3 nats on a single step.
    rising = rose(reward)
    grew = k1 >= KL_HIGH and k1 >= 4 * max(k0, 1e-4) and rising
    if not grew and held < KL_RUNAWAY:
        return None
    summary = f"kl {num(k0)} -> {num(k1)} while reward {num(r0)} -> {num(r1)}"
    if not grew:
        summary = f"kl {num(kl[0][1])} at step {int(kl[0][0])} -> median {num(held)} over the second half " + (
            f"(over {KL_RUNAWAY}), while reward {num(r0)} -> {num(r1)}"
        )
    ev = evidence("kl", kl, summary, kl=[k0, k1], kl_second_half_median=held)
    ev["values"]["reward"] = [r0, r1]
    fix = change(h, "beta", 10 if (h.hyper.get("beta") or 0) < 0.01 else 2) + " (the KL coefficient)"
    if not rising:
        fix += f"; {change(h, 'lr', 1 / 3)}"
    return finding(
        h,
        "kl_too_weak",
        "error" if peak >= KL_EXPLODES else "warn",
        "KL rises fast"
        + (" with the reward" if rising else " while the reward falls")
        + ": the KL penalty is too weak",
        ev,
        "the policy runs away from the reference to chase the reward (reward hacking follows)"
        if rising
        else "nothing holds the policy near the reference, and a large step broke it",
        fix,
    )


def kl_too_strong(h: History) -> Finding | None:
    kl, reward = h.series("kl"), h.series("reward")
    if not enough(kl) or not enough(reward):
        return missing(h, "kl_too_strong", "kl and reward")
    k0, k1 = windows(kl)
    r0, r1 = windows(reward)
    zero_std = [v for _, v in h.series("frac_reward_zero_std")]
    no_signal = bool(zero_std) and min(zero_std) >= 0.9
    if max(k0, k1) > KL_FLAT or rose(reward) or no_signal or max(r0, r1) >= 0.95:
        return None
    ev = evidence("kl", kl, f"kl stays {num(k1)} and reward {num(r0)} -> {num(r1)}", kl=[k0, k1], reward=[r0, r1])
    return finding(
        h,
        "kl_too_strong",
        "warn",
        "KL flat and reward flat: the KL penalty is too strong, or the learning rate too small",
        ev,
        "the policy cannot move away from the reference, so the reward cannot rise",
        f"{change(h, 'beta', 0.1)}; or {change(h, 'lr', 10)}",
    )


def _distinct_sources(h: History) -> list[tuple[str, float, list[tuple[float, float]], list[tuple[float, float]]]]:
    """(where, baseline distinct, distinct, distinct_2) from sampled completions and from the
    checkpoints' greedy outputs; a checkpoint's baseline is the base model's (the probe's samples)."""
    found = []
    d, d2 = h.series("completions/distinct"), h.series("completions/distinct_2")
    if d or d2:
        found.append(("sampled completions", windows(d)[0] if d else 0.0, d, d2))
    ckpt = [c for c in h.checkpoints if isinstance(c.get("distinct"), (int, float))]
    if ckpt:
        d = [(float(c["step"]), float(c["distinct"])) for c in ckpt]
        d2 = [(float(c["step"]), float(c["distinct_2"])) for c in ckpt if isinstance(c.get("distinct_2"), float)]
        base = h.base_diversity.get("distinct", d[0][1])
        found.append(("checkpoints' greedy outputs", base, d, d2))
    return found


def repetition(h: History) -> Finding | None:
    sources = _distinct_sources(h)
    if not sources:
        return missing(h, "repetition", "completions/distinct or checkpoints' output diversity")
    entropy, reward = h.series("entropy"), h.series("reward")
    if h.kind in RL_KINDS and enough(entropy) and enough(reward):
        e0, e1 = windows(entropy)
        r0, r1 = windows(reward)
        if e1 > ENTROPY_EXPLODES * max(e0, 1e-3) and r1 < r0:
            summary = f"entropy {num(e0)} -> {num(e1)} while reward {num(r0)} -> {num(r1)} (sampling turns to noise)"
            ev = evidence("entropy", entropy, summary, entropy=[e0, e1], reward=[r0, r1])
            return finding(
                h,
                "repetition",
                "error",
                "meaningless output: entropy explodes as the reward falls",
                ev,
                "the learning rate is too high: one large step broke the policy",
                change(h, "lr", 0.1),
            )
    for where, base, d, d2 in sources:
        last = windows(d)[1] if d else base
        rep = min((v for _, v in d2), default=1.0)
        collapsed = bool(d) and last < DISTINCT_DROP * base
        if not collapsed and rep >= REPEAT_FLOOR:
            continue
        if collapsed:
            summary = f"distinct share of {where} {num(base)} -> {num(last)} (same output for different prompts)"
        else:
            summary = f"within-text distinct-2 of {where} falls to {num(rep)} (texts repeat themselves)"
        ev = evidence("distinct" if collapsed else "distinct_2", d if collapsed else d2, summary, distinct=[base, last])
        return finding(
            h,
            "repetition",
            "error",
            "repeated or meaningless output: mode collapse",
            ev,
            "the learning rate is too high: the policy collapses onto a few outputs",
            change(h, "lr", 0.1),
        )
    return None


def length_drift(h: History) -> Finding | None:
    lengths, unit = h.series("completions/mean_length"), "tokens"
    if not enough(lengths):
        lengths = [(float(c["step"]), float(c["mean_length"])) for c in h.checkpoints if "mean_length" in c]
        unit = "characters (checkpoints' greedy outputs)"
    if len(lengths) < 2:
        return missing(h, "length_drift", "completions/mean_length or checkpoints' output lengths")
    l0, l1 = windows(lengths)
    ratio = l1 / l0 if l0 > 0 else math.inf
    if abs(l1 - l0) < LENGTH_MIN_CHANGE or 1 / LENGTH_RATIO < ratio < LENGTH_RATIO:
        return None
    longer = l1 > l0
    ev = evidence("completions/mean_length", lengths, f"mean length {num(l0)} -> {num(l1)} {unit}", length=[l0, l1])
    fix = (
        "add a length penalty to the reward (or cap max_new_tokens); a reward model needs training pairs "
        "of varied lengths, where the longer answer is not always the chosen one"
        if longer
        else "check that the reward does not pay for stopping early (an empty or truncated answer)"
    )
    if longer and isinstance(h.hyper.get("max_new_tokens"), int):
        fix += f"; max_new_tokens {h.hyper['max_new_tokens']} -> {max(1, round(h.hyper['max_new_tokens'] * l0 / l1 * 1.5))}"
    return finding(
        h,
        "length_drift",
        "warn",
        f"completions drift {'long' if longer else 'short'} ({num(ratio)}x)",
        ev,
        "the reward is biased by length (unless longer reasoning is what earns it: compare with accuracy)",
        fix,
    )


def entropy_collapse(h: History) -> Finding | None:
    entropy = h.series("entropy")
    if not enough(entropy):
        return missing(h, "entropy_collapse", "entropy")
    e0, e1 = windows(entropy)
    if e0 <= 0.05 or e1 >= ENTROPY_DROP * e0:
        return None
    half = entropy[: max(1, len(entropy) // 2)]
    fast = any(v < 2 * ENTROPY_DROP * e0 for _, v in half)
    if not fast:
        return None
    ev = evidence(
        "entropy", entropy, f"entropy {num(e0)} -> {num(e1)}, most of the fall in the first half", entropy=[e0, e1]
    )
    return finding(
        h,
        "entropy_collapse",
        "warn",
        "entropy collapses fast: outputs turn uniform",
        ev,
        "the policy sharpens too fast (a high learning rate, or no room to explore)",
        f"{change(h, 'epsilon_high', 1.25)} (clip-higher); {change(h, 'lr', 1 / 3)}",
    )


def reward_never_rises(h: History) -> Finding | None:
    reward = h.series("reward")
    if not enough(reward):
        return missing(h, "reward_never_rises", "reward")
    r0, r1 = windows(reward)
    zero_std = [v for _, v in h.series("frac_reward_zero_std")]
    no_signal = bool(zero_std) and sum(zero_std) / len(zero_std) >= 0.9
    first = [v for _, v in reward[: max(1, len(reward) // 4)]]
    flat_start = max(first) - min(v for _, v in reward) <= REWARD_FLAT  # never earned, not earned then lost
    never = flat_start and (max(v for _, v in reward) <= 0.0 if not zero_std else no_signal and not rose(reward))
    if not never:
        return None
    summary = f"reward {num(r0)} -> {num(r1)}"
    if zero_std:
        summary += f"; {sum(zero_std) / len(zero_std):.0%} of groups had identical rewards (no signal)"
    probe = h.probe or {}
    passk = probe.get("pass@k") if isinstance(probe.get("pass@k"), dict) else {}
    if passk:
        k = max(passk, key=lambda s: int(s) if str(s).isdigit() else 0)
        summary += f"; the probe's pass@{k} was {passk[k]:.1%}"
    ev = evidence("reward", reward, summary, reward=[r0, r1], probe_pass_at_k=passk or None)
    return finding(
        h,
        "reward_never_rises",
        "error",
        "the reward never rises: the model never samples a success",
        ev,
        "with no success in a group there is no advantage to learn from",
        "probe with many rollouts first (probe samples 8 -> 32); if pass@k stays near 0, run sft or "
        "rejection_sample before RL, or start from a stronger base model",
    )


# ---- losses ----


def _loss(h: History) -> list[tuple[float, float]]:
    return h.series("loss")


def loss_spikes(h: History) -> Finding | None:
    # an online-RL loss is a policy-gradient surrogate near 0, not a fit: only its gradient norm counts
    loss, grad = ([] if h.kind in RL_KINDS else _loss(h)), h.series("grad_norm")
    if not enough(loss) and not enough(grad):
        return missing(h, "loss_spikes", "loss or grad_norm")
    scale = max(v for _, v in loss) - min(v for _, v in loss) if loss else 0.0
    spikes = []
    for i in range(2, len(loss)):
        before = statistics.median(v for _, v in loss[max(0, i - 5) : i])
        step, value = loss[i]
        if value > SPIKE_RATIO * max(before, 1e-8) and value - before > 0.2 * scale:
            spikes.append((step, before, value))
    grad_spikes = []
    if enough(grad):
        # against the steps just before (gradients shrink as a run converges); the first steps are large
        # by nature, and a zero median is a dead run, not a scale
        for i in range(2, len(grad)):
            before = statistics.median(v for _, v in grad[max(0, i - 5) : i])
            if before > 1e-6 and grad[i][1] > GRAD_SPIKE * before:
                grad_spikes.append(grad[i])
    if not spikes and not grad_spikes:
        return None
    parts = [f"loss {num(b)} -> {num(v)} at step {int(s)}" for s, b, v in spikes[:3]]
    parts += [f"grad_norm {num(v)} at step {int(s)}" for s, v in grad_spikes[:3]]
    ev = evidence("loss", loss, "; ".join(parts), spikes=len(spikes), grad_spikes=len(grad_spikes))
    # one small blip (a warmup step, a hard batch) is a note; repeated or large spikes are a warning
    worst = max([v / max(b, 1e-8) for _, b, v in spikes] + [GRAD_SPIKE * 2 if len(grad_spikes) > 1 else 0.0])
    severity = "warn" if len(spikes) + len(grad_spikes) > 1 or worst >= BIG_SPIKE else "info"
    return finding(
        h,
        "loss_spikes",
        severity,
        f"loss spikes ({len(spikes)} loss, {len(grad_spikes)} gradient-norm)",
        ev,
        "steps too large for the curvature: a high learning rate or loose gradient clipping",
        f"{change(h, 'max_grad_norm', 0.2)} (gradient clipping); {change(h, 'lr', 1 / 3)}",
    )


def loss_diverges(h: History) -> Finding | None:
    raw = [r.get("loss") for r in h.rows if "loss" in r]
    bad = [v for v in raw if isinstance(v, float) and not math.isfinite(v)]
    loss = _loss(h)
    if bad:
        ev = evidence("loss", loss, f"{len(bad)} logged losses are NaN or infinite", non_finite=len(bad))
    else:
        if not enough(loss):
            return missing(h, "loss_diverges", "loss")
        start = loss[: max(1, len(loss) // 10)]  # before a high learning rate does its damage
        l0, l1 = sum(v for _, v in start) / len(start), windows(loss)[1]
        if l1 <= l0 + 0.1 * abs(l0):
            return None
        ev = evidence("loss", loss, f"loss {num(l0)} at the start -> {num(l1)} in the last quarter", loss=[l0, l1])
    return finding(
        h,
        "loss_diverges",
        "error",
        "the training loss rises instead of falling",
        ev,
        "the learning rate is far too high",
        change(h, "lr", 0.1),
    )


def score_drop(h: History, score: float) -> float:
    """A fall in checkpoint score that is more than noise: SCORE_DROP, or two standard errors
    of a pass rate over the prompts that scored it, whichever is larger."""
    if not h.score_n:
        return SCORE_DROP
    return max(SCORE_DROP, 2 * math.sqrt(max(score * (1 - score), 0.05) / h.score_n))


def _checkpoint_scores(h: History) -> list[tuple[int, float]]:
    key = h.score_key
    return [(int(c["step"]), float(c[key])) for c in h.checkpoints if key and isinstance(c.get(key), (int, float))]


def loss_vs_score(h: History) -> Finding | None:
    scores, loss = _checkpoint_scores(h), _loss(h)
    if len(scores) < 2:
        return missing(h, "loss_vs_score", "scores of two or more checkpoints (advisor stages record them)")
    if not enough(loss):
        return missing(h, "loss_vs_score", "loss")
    l0, l1 = windows(loss)
    best = max(scores, key=lambda s: (s[1], s[0]))
    last = scores[-1]
    chosen = next((s for s in scores if s[0] == h.chosen), best)
    drop = best[1] - last[1]
    # a steady fall over every checkpoint is evidence at half the size of a single drop
    # (the first checkpoint scores the best, tied or not: a plateau before the fall is still a fall)
    steady = len(scores) >= 3 and scores[0][1] == best[1] and all(b[1] >= a[1] for b, a in itertools.pairwise(scores))
    needed = score_drop(h, best[1])
    if not (l1 < 0.95 * l0 and (drop >= needed or steady and drop >= max(0.05, needed / 2))):
        return None
    name = "eval pass@1" if h.score_key == "eval_pass@1" else str(h.score_key).replace("_", " ")
    summary = (
        f"loss {num(l0)} -> {num(l1)} while {name} fell from {best[1]:.1%} (step {best[0]}) to {last[1]:.1%} "
        f"(step {last[0]}); checkpoint {chosen[0]} was kept, {chosen[1] - last[1]:+.1%} over the last"
    )
    ev = evidence("loss", loss, summary, loss=[l0, l1], scores=dict(scores), chosen=chosen[0])
    return finding(
        h,
        "loss_vs_score",
        "warn",
        f"loss falls while checkpoint scores fall (checkpoint {chosen[0]} won by {chosen[1] - last[1]:+.1%})",
        ev,
        "the model fits the training data better while the task gets worse: wrong or noisy training "
        "targets, or overfitting",
        f"keep choosing by accuracy (this stage kept step {chosen[0]}); check the training data's answers, "
        f"or train less: {change(h, 'max_steps', 0.5) if (h.hyper.get('max_steps') or 0) > 0 else 'epochs -> fewer'}",
    )


# ---- DPO ----


def dpo_beta_too_high(h: History) -> Finding | None:
    margins = h.series("rewards/margins")
    if not enough(margins):
        return missing(h, "dpo_beta_too_high", "rewards/margins")
    beta = h.hyper.get("beta")
    if not isinstance(beta, (int, float)) or beta <= 0:
        return missing(h, "dpo_beta_too_high", "beta (not in this log: the margin cannot be read in nats)")
    m0, m1 = windows(margins)
    move = m1 / beta  # the policy's own log-ratio margin over the reference, in nats
    if move >= DPO_MIN_MOVE:
        return None
    summary = (
        f"the policy's own log-ratio margin (rewards/margins / beta) reached only {num(move)} nats "
        f"(rewards/margins {num(m1)} at beta {num(beta)})"
    )
    ev = evidence("rewards/margins", margins, summary, margins=[m0, m1], log_ratio_margin=move)
    return finding(
        h,
        "dpo_beta_too_high",
        "warn",
        "DPO margins grow slowly: beta is too high",
        ev,
        "a high beta saturates the loss after a tiny move, so the policy stays at the reference",
        change(h, "beta", 0.5 if beta <= 0.5 else 0.1 / beta),
    )


def dpo_beta_too_low(h: History) -> Finding | None:
    chosen, loss, margins = h.series("logps/chosen"), _loss(h), h.series("rewards/margins")
    if not enough(chosen) or not enough(loss) or not enough(margins):
        return missing(h, "dpo_beta_too_low", "logps/chosen, rewards/margins and loss")
    c0, c1 = windows(chosen)
    l0, l1 = windows(loss)
    scores = _checkpoint_scores(h)
    falling = len(scores) >= 2 and max(s for _, s in scores) - scores[-1][1] >= score_drop(h, scores[-1][1])
    beta = h.hyper.get("beta")
    move = windows(margins)[1] / beta if isinstance(beta, (int, float)) and beta > 0 else None
    # The two faces of a weak tie to the reference: the loss collapses while quality falls (or the
    # chosen answers get much less likely), or the loss stays at chance though the policy moved far.
    collapsed = l1 < 0.2 * l0 and (falling or c0 - c1 > DPO_CHOSEN_FALL)
    at_chance = move is not None and l1 > DPO_NEAR_CHANCE * math.log(2) and move > DPO_BIG_MOVE
    if not (collapsed or at_chance):
        return None
    if collapsed:
        summary = f"loss {num(l0)} -> {num(l1)} while the chosen answers' log-probability went {num(c0)} -> {num(c1)}"
    else:
        summary = (
            f"loss stays at {num(l1)} (chance is 0.693) although the policy's log-ratio margin grew to "
            f"{num(move)} nats: beta x margin stays tiny"
        )
    if scores:
        summary += f"; checkpoint pass rate {scores[0][1]:.1%} -> {scores[-1][1]:.1%}"
    ev = evidence("loss", loss, summary, logps_chosen=[c0, c1], loss=[l0, l1], log_ratio_margin=move)
    fix = change(h, "beta", 10 if isinstance(beta, (int, float)) and beta < 0.05 else 2)
    return finding(
        h,
        "dpo_beta_too_low",
        "warn",
        "DPO: beta too low (or lr too high): the policy drifts from its reference unchecked",
        ev,
        "a weak tie to the reference lets the policy move far for little loss (likelihood displacement, "
        "worse outputs than the SFT model)",
        f"{fix}; or {change(h, 'lr', 1 / 3)}; or add an SFT term (loss_type [sigmoid, sft])",
    )


RULES: tuple[Rule, ...] = (
    Rule("kl_too_weak", RL_KINDS, kl_too_weak),
    Rule("kl_too_strong", RL_KINDS, kl_too_strong),
    Rule("repetition", POLICY, repetition),
    Rule("length_drift", POLICY, length_drift),
    Rule("entropy_collapse", RL_KINDS, entropy_collapse),
    Rule("reward_never_rises", RL_KINDS, reward_never_rises),
    Rule("loss_spikes", ALL, loss_spikes),
    Rule("loss_diverges", ("sft", "dpo", "reward_model"), loss_diverges),
    Rule("dpo_beta_too_high", ("dpo",), dpo_beta_too_high),
    Rule("dpo_beta_too_low", ("dpo",), dpo_beta_too_low),
    Rule("loss_vs_score", ("sft", "psft", "dpo", "reward_model"), loss_vs_score),
)
