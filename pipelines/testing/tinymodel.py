"""Tiny models and tokenizers, built offline, for tests, the demo and benchmarks.

Nothing here touches a model hub. Everything is made from scratch on the spot:

* :func:`build_tokenizer` makes a character-level tokenizer with the ``tokenizers``
  library: one token per character (digits, arithmetic signs, letters, a little
  punctuation, space and newline), the special tokens ``<pad> <bos> <eos> <unk>`` and the
  role tokens ``<|system|> <|user|> <|assistant|>`` of a tiny chat template. It is
  wrapped as a ``transformers`` fast tokenizer with left padding, so
  ``tokenizer(text)`` and ``tokenizer.apply_chat_template(messages)`` behave as they do
  for any hub model.
* :func:`build_tiny_model` saves a randomly initialised Llama or Qwen2 causal LM with
  that tokenizer. The directory loads back with ``AutoModelForCausalLM.from_pretrained``
  and ``AutoTokenizer.from_pretrained``, so the stages and TRL treat it as a real model.
* :func:`train_char_model` trains such a model from scratch on prompt/answer pairs with a
  plain torch loop and a completion-only loss (the prompt tokens are not scored). A
  ~1M-parameter model learns 2-digit addition at about 10 steps per second on one CPU
  thread; stopping at a target sampled accuracy gives the demo a weak student (~30%)
  and a strong teacher (~90%) in about a minute each.
* :func:`addition_task` makes the prompt/answer rows for that toy task.

How text becomes tokens, the contract the generation backends rely on:

* a plain prompt is tokenized with ``add_special_tokens=True``: ``<bos>`` + characters;
* a conversation is rendered by the chat template, which already starts with ``<bos>``
  and ends every message with ``<eos>``, then tokenized with ``add_special_tokens=False``;
* a model stops by emitting ``<eos>``; training appends it after every answer.

Example:
    >>> from pipelines.testing.tinymodel import addition_task, train_char_model
    >>> rows = addition_task(2000, seed=0)
    >>> rows[0]  # doctest: +SKIP
    {'prompt': '49+97=', 'answer': '146'}
    >>> held_out = [(r["prompt"], r["answer"]) for r in addition_task(200, seed=7)]
    >>> student = train_char_model(  # doctest: +SKIP
    ...     "runs/student", [(r["prompt"], r["answer"]) for r in rows], steps=1000,
    ...     eval_examples=held_out, eval_every=25, target_accuracy=0.3, num_threads=1)
    >>> student.steps, student.accuracy[-1]  # doctest: +SKIP
    (325, (325, 0.37))
"""

from __future__ import annotations

import json
import math
import random
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, *ROLE_TOKENS)
CHARACTERS = string.digits + "+-*/=() " + string.ascii_lowercase + string.ascii_uppercase + ".,?!:;'\"_<>|#%\n"

# Every message is `<|role|>content<eos>`; the generation prompt opens the assistant turn.
# Ending turns with <eos> means a model stops where generation should stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
ARCHITECTURES = ("llama", "qwen2")
MAX_POSITIONS = 512


def build_tokenizer() -> Any:
    """Build the character-level tokenizer as a ``transformers`` fast tokenizer.

    Returns:
        A ``PreTrainedTokenizerFast`` with pad/bos/eos/unk set, ``padding_side="left"``
        and the chat template :data:`CHAT_TEMPLATE`. Unknown characters map to ``<unk>``.

    Example:
        >>> tok = build_tokenizer()
        >>> tok.decode(tok("12+34=")["input_ids"], skip_special_tokens=True)
        '12+34='
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *CHARACTERS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # One piece per character, newlines included ("." would skip "\n").
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # matched whole, before the split
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.decoder = decoders.Fuse()  # join characters back without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
    )


def save_tokenizer(tokenizer: Any, out_dir: str | Path) -> None:
    """Save the tokenizer so that older ``transformers`` (inside vLLM, say) load it too.

    ``transformers`` 5 records its own class name and writes the chat template to a
    separate file; we also record the portable class name and the template inline.
    """
    out = Path(out_dir)
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _model_config(arch: str, vocab_size: int, hidden_size: int, layers: int, heads: int, tokenizer: Any) -> Any:
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    if hidden_size % heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by heads ({heads})")
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common)
    from transformers import Qwen2Config

    return Qwen2Config(**common, use_sliding_window=False)


def _new_model(arch: str, hidden_size: int, layers: int, heads: int, seed: int) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer()
    config = _model_config(arch, len(tokenizer), hidden_size, layers, heads, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.update(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return model, tokenizer


def build_tiny_model(
    out_dir: str | Path,
    arch: str = "llama",
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny causal LM and its tokenizer.

    Args:
        out_dir: Directory to write; created if missing.
        arch: ``"llama"`` or ``"qwen2"``.
        hidden_size: Width of the model; the MLP is four times wider.
        layers: Number of decoder layers.
        heads: Attention heads (and key/value heads); must divide ``hidden_size``.
        seed: Seed for the weight initialisation: same seed, same weights.

    Returns:
        The directory, loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    model, tokenizer = _new_model(arch, hidden_size, layers, heads, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out


def addition_task(n: int, seed: int = 0, digits: int = 2) -> list[dict[str, str]]:
    """Make ``n`` addition problems such as ``{"prompt": "12+34=", "answer": "46"}``.

    Args:
        n: Number of rows.
        seed: Seed for the operands: same seed, same rows.
        digits: Operands are drawn uniformly from ``[0, 10**digits)``.

    Returns:
        Rows with ``prompt`` and ``answer`` strings.
    """
    rng = random.Random(seed)
    high = 10**digits - 1
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, high), rng.randint(0, high)
        rows.append({"prompt": f"{a}+{b}=", "answer": str(a + b)})
    return rows


@dataclass
class TrainResult:
    """What :func:`train_char_model` did.

    Attributes:
        path: The saved model directory.
        losses: Mean training loss over each logging window, in order.
        seconds: Wall time of the training loop.
        steps: Optimizer steps taken (fewer than asked if ``target_accuracy`` was hit).
        parameters: Number of model parameters.
        accuracy: ``(step, sampled accuracy)`` at every evaluation, when
            ``eval_examples`` were given.
    """

    path: Path
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    parameters: int = 0
    accuracy: list[tuple[int, float]] = field(default_factory=list)


def _encode_examples(
    tokenizer: Any, examples: Sequence[tuple[str, str]], chat: bool
) -> tuple[list[list[int]], list[int]]:
    """Token ids of prompt + answer + <eos>, and where each answer starts."""
    sequences, starts = [], []
    for prompt, answer in examples:
        if chat:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append(prompt_ids + answer_ids)
        starts.append(len(prompt_ids))
    return sequences, starts


def answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    temperature: float = 1.0,
    seed: int = 0,
    chat: bool = False,
    max_new_tokens: int = 8,
) -> list[str]:
    """One answer per prompt from an in-memory model (one left-padded batch, special tokens
    dropped). In-memory and quick, for tracking training; stages use ``pipelines.generation``
    instead. ``temperature=0`` decodes greedily."""
    import torch

    if chat:
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
        batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    else:
        batch = tokenizer(list(prompts), padding=True, return_tensors="pt")
    if temperature > 0:
        options = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
    else:
        options = {"do_sample": False}
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **options,
        )
    model.train(was_training)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def sampled_accuracy(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[str, str]],
    *,
    temperature: float = 1.0,
    seed: int = 0,
    chat: bool = False,
    max_new_tokens: int = 8,
) -> float:
    """Share of ``examples`` whose one sampled answer (:func:`answers`) equals the reference
    exactly, whitespace aside. ``temperature=0`` gives greedy accuracy."""
    got = answers(
        model, tokenizer, [p for p, _ in examples], temperature=temperature, seed=seed, chat=chat,
        max_new_tokens=max_new_tokens,
    )  # fmt: skip
    return sum(a.strip() == ref for a, (_, ref) in zip(got, examples, strict=True)) / len(examples)


def train_char_model(
    out_dir: str | Path,
    examples: Sequence[tuple[str, str]],
    steps: int = 600,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    *,
    arch: str = "llama",
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    init_from: str | Path | None = None,
    warmup_steps: int | None = None,
    weight_decay: float = 0.0,
    chat: bool = False,
    num_threads: int | None = None,
    log_every: int = 25,
    eval_examples: Sequence[tuple[str, str]] | None = None,
    eval_every: int = 50,
    target_accuracy: float | None = None,
) -> TrainResult:
    """Train a character-level model from scratch (or further) on prompt/answer pairs.

    A plain loop: sample a batch, score only the answer tokens and the closing
    ``<eos>`` (completion-only loss), AdamW step, linear warmup then cosine decay to
    10% of ``lr``. The defaults (128 wide, 4 layers, about 1M parameters) learn 2-digit
    addition from 3000 rows at about 10-15 steps/s on one CPU thread. Sampled accuracy
    climbs from near 0 to above 90% within a few hundred steps, and where the climb
    starts depends on ``steps`` (the schedule) and the seed. To land a model in a band,
    pass ``eval_examples`` and ``target_accuracy``: training stops at the first
    evaluation that reaches the target. Measured with ``steps=1000, seed=0``,
    ``eval_every=25`` and 200 held-out rows: target 0.3 stopped at step 325 (30 s) with
    a held-out sampled pass@1 of 0.37; target 0.9 stopped at step 625 (60 s) at 0.92.

    Args:
        out_dir: Directory to save the trained model and tokenizer to.
        examples: ``(prompt, answer)`` pairs, e.g. ``("12+34=", "46")``.
        steps: Optimizer steps.
        lr: Peak learning rate.
        batch_size: Examples per step, drawn with replacement.
        seed: Seeds the initialisation and the batch order: same seed, same model.
        arch: ``"llama"`` or ``"qwen2"``; ignored with ``init_from``.
        hidden_size: Model width; ignored with ``init_from``.
        layers: Decoder layers; ignored with ``init_from``.
        heads: Attention heads; ignored with ``init_from``.
        init_from: A saved model directory to continue training instead of starting
            from random weights (e.g. to make a teacher out of a student).
        warmup_steps: Linear warmup length; default 5% of ``steps``.
        weight_decay: AdamW weight decay.
        chat: Wrap prompts as one user message through the chat template, so the
            model answers conversational prompts rather than plain ones.
        num_threads: If set, torch's intra-op thread count during training (restored
            afterwards); 1 makes timings steadier on a shared machine.
        log_every: Steps per entry in ``TrainResult.losses``.
        eval_examples: Held-out pairs for :func:`sampled_accuracy` (temperature 1,
            fixed seed) every ``eval_every`` steps; recorded in ``TrainResult.accuracy``.
        eval_every: Steps between evaluations.
        target_accuracy: Stop at the first evaluation whose sampled accuracy reaches
            this (needs ``eval_examples``).

    Returns:
        A :class:`TrainResult` with the saved path and the loss curve.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not examples:
        raise ValueError("examples is empty: nothing to train on")
    if target_accuracy is not None and not eval_examples:
        raise ValueError("target_accuracy needs eval_examples to measure it on")
    previous_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        if init_from is not None:
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_pretrained(init_from, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(init_from)
        else:
            model, tokenizer = _new_model(arch, hidden_size, layers, heads, seed)
        model.train()

        sequences, starts = _encode_examples(tokenizer, examples, chat)
        width = max(len(s) for s in sequences)
        count = len(sequences)
        input_ids = torch.full((count, width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((count, width), -100, dtype=torch.long)
        mask = torch.zeros((count, width), dtype=torch.long)
        for i, (seq, start) in enumerate(zip(sequences, starts, strict=True)):
            # Right padding: positions stay 0..len-1, the same as left-padded generation
            # sees once HF derives position ids from the attention mask.
            input_ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, start : len(seq)] = torch.tensor(seq[start:])
            mask[i, : len(seq)] = 1

        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
        warmup = max(1, int(0.05 * steps) if warmup_steps is None else warmup_steps)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, steps - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        generator = torch.Generator().manual_seed(seed)
        losses, window, accuracy = [], [], []
        taken = 0
        started = time.perf_counter()
        for step in range(1, steps + 1):
            idx = torch.randint(0, count, (batch_size,), generator=generator)
            batch_mask = mask[idx]
            keep = int(batch_mask.sum(dim=1).max())  # trim the shared right padding
            out = model(input_ids=input_ids[idx, :keep], attention_mask=batch_mask[:, :keep], labels=labels[idx, :keep])
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            window.append(out.loss.item())
            taken = step
            if len(window) == log_every:
                losses.append(sum(window) / len(window))
                window = []
            if eval_examples and (step % eval_every == 0 or step == steps):
                acc = sampled_accuracy(model, tokenizer, eval_examples, seed=seed, chat=chat)
                accuracy.append((step, acc))
                if target_accuracy is not None and acc >= target_accuracy:
                    break
        if window:
            losses.append(sum(window) / len(window))
        seconds = time.perf_counter() - started

        model.eval()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        save_tokenizer(tokenizer, out)
        return TrainResult(
            path=out,
            losses=losses,
            seconds=seconds,
            steps=taken,
            parameters=sum(p.numel() for p in model.parameters()),
            accuracy=accuracy,
        )
    finally:
        torch.set_num_threads(previous_threads)


def memorize(
    out_dir: str | Path,
    examples: Sequence[tuple[str, str]],
    *,
    chat: bool = True,
    rounds: int = 10,
    steps_per_round: int = 150,
    max_loss: float = 0.005,
    seed: int = 0,
    num_threads: int | None = 1,
    **train_options: Any,
) -> TrainResult:
    """Train a tiny model until greedy decoding reproduces every answer exactly.

    A model that has learnt a fixed reply for each prompt is a real engine with known
    outputs: served through transformers (or any backend), its pass rates are known in
    advance, so tests can check a stage's arithmetic against a real generation path. The
    same prompt cannot map to two answers. Training runs in rounds of
    ``steps_per_round`` steps and stops at the first round after which every prompt's
    greedy answer is its own and the training loss is under ``max_loss``, so sampling at a
    low temperature (0.3 or less) gives the same answers too.

    Args:
        out_dir: Where the model is saved.
        examples: ``(prompt, answer)`` pairs; answers may be empty (the model stops at once).
        chat: Prompts arrive as one user message through the chat template (as the ``openai``
            backend and :class:`~pipelines.testing.model_server.ModelServer` send them).
        rounds: The most training rounds before giving up.
        max_loss: The mean loss per answer token the last logging window must be under.
        steps_per_round: Optimizer steps per round.
        seed: Seeds the initialisation and batch order.
        num_threads: torch threads while training.
        train_options: Passed to :func:`train_char_model` (``hidden_size``, ``layers``, ``lr``...).

    Raises:
        ValueError: A prompt appears with two different answers.
        RuntimeError: Some answer is still wrong after ``rounds`` rounds.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    replies: dict[str, str] = {}
    for prompt, reply in examples:
        if replies.setdefault(prompt, reply) != reply:
            raise ValueError(f"prompt {prompt!r} has two answers: {replies[prompt]!r} and {reply!r}")
    prompts = list(replies)
    longest = max(len(a) for a in replies.values()) + 4
    options = {"hidden_size": 64, "layers": 2, "lr": 3e-3, "batch_size": 32, **train_options}
    total = TrainResult(path=Path(out_dir))
    wrong: list[str] = prompts
    for round_ in range(rounds):
        result = train_char_model(
            out_dir,
            list(replies.items()),
            steps=steps_per_round,
            seed=seed + round_,
            chat=chat,
            num_threads=num_threads,
            init_from=out_dir if round_ else None,
            warmup_steps=None if round_ == 0 else 1,
            **options,
        )
        total.losses += result.losses
        total.seconds += result.seconds
        total.steps += result.steps
        total.parameters = result.parameters
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
        got = answers(model, AutoTokenizer.from_pretrained(out_dir), prompts, temperature=0, chat=chat,
                      max_new_tokens=longest)  # fmt: skip
        wrong = [p for p, a in zip(prompts, got, strict=True) if a != replies[p]]
        if not wrong and result.losses and result.losses[-1] < max_loss:
            return total
    raise RuntimeError(
        f"memorize: {len(wrong)} of {len(prompts)} answers still wrong (loss {total.losses[-1]:.3g}) "
        f"after {total.steps} steps"
    )
