"""Tiny offline models: the char tokenizer, model building, the addition task, training."""

from __future__ import annotations

import json

import pytest

from pipelines.testing.tinymodel import (
    CHAT_TEMPLATE,
    addition_task,
    build_tiny_model,
    build_tokenizer,
    train_char_model,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against the
    neighbours' work and run ten times slower; these models are too small to gain."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tokenizer_is_one_token_per_character_with_bos():
    tok = build_tokenizer()
    ids = tok("12+34=")["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert len(ids) == 1 + len("12+34=")  # bos + one id per character
    assert tok.decode(ids, skip_special_tokens=True) == "12+34="


def test_tokenizer_maps_unknown_characters_to_unk():
    tok = build_tokenizer()
    ids = tok("a~b", add_special_tokens=False)["input_ids"]  # "~" is not in the vocabulary
    assert ids[1] == tok.unk_token_id


def test_tokenizer_keeps_spaces_and_newlines():
    tok = build_tokenizer()
    text = "a b\nc d"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_tokenizer_pads_on_the_left_for_generation():
    tok = build_tokenizer()
    batch = tok(["1+2=", "12+34="], padding=True)
    assert batch["input_ids"][0][:2] == [tok.pad_token_id] * 2
    assert batch["attention_mask"][0][:2] == [0, 0]


def test_chat_template_renders_roles_and_opens_the_assistant_turn():
    tok = build_tokenizer()
    text = tok.apply_chat_template(
        [{"role": "system", "content": "add"}, {"role": "user", "content": "1+2="}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<bos><|system|>add<eos><|user|>1+2=<eos><|assistant|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")  # role markers are single tokens


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_build_tiny_model_loads_back_with_auto_classes(tmp_path, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_model(tmp_path / arch, arch=arch, hidden_size=32, layers=1, heads=2)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == arch
    assert model.config.vocab_size == len(tok)
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<bos><|user|>hi<eos>"
    # Portable for older transformers (e.g. the one inside vLLM): class name and template inline.
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["chat_template"] == CHAT_TEMPLATE


def test_build_tiny_model_same_seed_same_weights(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "a", hidden_size=32, layers=1, seed=7))
    b = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "b", hidden_size=32, layers=1, seed=7))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_build_tiny_model_rejects_unknown_arch(tmp_path):
    with pytest.raises(ValueError, match="arch must be one of"):
        build_tiny_model(tmp_path, arch="gpt2")


def test_addition_task_is_seeded_and_correct():
    rows = addition_task(50, seed=3)
    assert rows == addition_task(50, seed=3)
    assert rows != addition_task(50, seed=4)
    for row in rows:
        a, b = row["prompt"].rstrip("=").split("+")
        assert int(a) + int(b) == int(row["answer"])
        assert max(int(a), int(b)) < 100


def _one_digit_sums():
    return [(f"{a}+{b}=", str(a + b)) for a in range(10) for b in range(10)]


def _greedy_accuracy(path, examples):
    from pipelines.generation import HFGenerator

    gen = HFGenerator(str(path), batch_size=len(examples))
    outputs = gen.generate([p for p, _ in examples], n=1, temperature=0, max_new_tokens=4)
    return sum(out[0] == answer for out, (_, answer) in zip(outputs, examples, strict=True)) / len(examples)


def test_training_lowers_loss_and_learns_one_digit_addition(tmp_path):
    # 300 steps of a 64-wide model take about 3 s on 2 cores; an untrained model scores ~0.
    examples = _one_digit_sums()
    untrained = build_tiny_model(tmp_path / "untrained", hidden_size=64, layers=2)
    result = train_char_model(
        tmp_path / "trained", examples, steps=300, lr=1e-2, batch_size=32, seed=0, hidden_size=64, layers=2
    )
    assert result.steps == 300 and result.parameters > 0
    assert result.losses[-1] < 0.6 * result.losses[0]
    before = _greedy_accuracy(untrained, examples)
    after = _greedy_accuracy(result.path, examples)
    assert before < 0.05
    assert after >= 0.25, f"greedy accuracy after training {after:.2f}"


def test_training_stops_at_the_target_accuracy(tmp_path):
    # The demo lands its student in a pass@1 band this way; 1-digit sums pass 40% by ~100 steps.
    examples = _one_digit_sums()
    result = train_char_model(
        tmp_path / "m",
        examples,
        steps=400,
        lr=1e-2,
        batch_size=32,
        hidden_size=64,
        layers=2,
        eval_examples=examples,
        eval_every=25,
        target_accuracy=0.4,
    )
    assert result.steps < 400, "stopped early"
    assert len(result.accuracy) >= 2
    assert result.accuracy[-1] == (result.steps, result.accuracy[-1][1])
    assert result.accuracy[-1][1] >= 0.4
    assert all(acc < 0.4 for _, acc in result.accuracy[:-1])


def test_target_accuracy_needs_eval_examples(tmp_path):
    with pytest.raises(ValueError, match="needs eval_examples"):
        train_char_model(tmp_path, _one_digit_sums(), steps=1, target_accuracy=0.5)


def test_training_is_deterministic_given_the_seed(tmp_path):
    examples = _one_digit_sums()
    kwargs = dict(steps=10, lr=1e-2, batch_size=8, hidden_size=32, layers=1, heads=2, log_every=5)
    a = train_char_model(tmp_path / "a", examples, seed=1, **kwargs)
    b = train_char_model(tmp_path / "b", examples, seed=1, **kwargs)
    c = train_char_model(tmp_path / "c", examples, seed=2, **kwargs)
    assert a.losses == b.losses
    assert a.losses != c.losses


def test_training_on_chat_prompts_continues_from_a_saved_model(tmp_path):
    examples = _one_digit_sums()[:20]
    first = train_char_model(tmp_path / "first", examples, steps=5, batch_size=4, hidden_size=32, layers=1, heads=2)
    second = train_char_model(tmp_path / "second", examples, steps=5, batch_size=4, init_from=first.path, chat=True)
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(second.path).config.hidden_size == 32  # kept the shape


def test_training_needs_examples(tmp_path):
    with pytest.raises(ValueError, match="examples is empty"):
        train_char_model(tmp_path, [], steps=1)
