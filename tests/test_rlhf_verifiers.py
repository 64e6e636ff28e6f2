"""The judge and reward_model verifiers: rubric rendering, parsing, position bias, abstention,
thresholds from held-out scores, TRL reward form, and bad input caught before compute."""

from __future__ import annotations

import json

import pytest

import verifiers
from verifiers.judge import JudgeUnavailable, JudgeVerifier
from verifiers.labels import parse_preference
from verifiers.registry import option_problems


class Scripted:
    """A judge model whose reply is a function of the prompt it is shown (records every prompt)."""

    def __init__(self, answer):
        self.answer = answer
        self.seen: list[str] = []

    def generate(self, prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=0, stop=None):
        texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        self.seen += texts
        return [[self.answer(t)] for t in texts]


def test_rubric_renders_question_answer_and_reference():
    gen = Scripted(lambda t: "score: 9")
    judge = JudgeVerifier(rubric="Q={{ question }} A={{ answer }} R={{ reference }}", chat=False, generator=gen)
    judge.verify("Hi Ann.", {"question": "Ann: late", "reference": "Sorry Ann."})
    assert gen.seen == ["Q=Ann: late A=Hi Ann. R=Sorry Ann."], "the rubric sees the prompt, the reply and the gold"


def test_pointwise_threshold_scale_and_panel_mean():
    panel = {"a": Scripted(lambda t: '{"score": 4}'), "b": Scripted(lambda t: "Rating: 2/4")}
    judge = JudgeVerifier(scale=4, threshold=3, generator=panel)
    v = judge.verify("hi", "bob: hours")
    assert v.score == pytest.approx(0.75) and v.passed, "mean of 4 and 2 on a 0-4 scale is 3, at the threshold"
    assert v.meta["judges"]["a"]["score"] == 4 and v.meta["judges"]["b"]["pass"] is False


def test_unparseable_reply_abstains_never_scores_zero():
    judge = JudgeVerifier(generator=Scripted(lambda t: "I would rather not say."))
    v = judge.verify("Hi", "Ann: late")
    assert not v.gradable and v.score is None, "an unreadable judge is an abstention"
    reward = judge.as_reward()
    assert reward(prompts=["Ann: late"], completions=["Hi"]) == [None], "TRL skips an abstention"
    # one readable judge on the panel grades; the abstaining one is left out of the mean
    panel = JudgeVerifier(generator={"mute": Scripted(lambda t: "hmm"), "ok": Scripted(lambda t: "score: 8")})
    assert panel.verify("Hi", "q").score == pytest.approx(0.8)


def test_pairwise_swaps_order_to_cancel_position_bias():
    # prefers the reply that greets by name, wherever it is shown
    def fair(text):
        a = text.split("<reply_a>")[1].split("</reply_a>")[0]
        return '{"winner": "A"}' if "Ann" in a else '{"winner": "B"}'

    judge = JudgeVerifier(mode="pairwise", generator=Scripted(fair))
    win = judge.verify("Hi Ann.", {"question": "Ann: hi", "reference": "Hello."})
    lose = judge.verify("Hello.", {"question": "Ann: hi", "reference": "Hi Ann."})
    assert (win.passed, win.score, lose.passed, lose.score) == (True, 1.0, False, 0.0)
    # a judge that always says "A" is pure position bias: the two orders disagree, a tie
    biased = JudgeVerifier(mode="pairwise", generator=Scripted(lambda t: "A"))
    tie = biased.verify("Hi Ann.", {"question": "Ann: hi", "reference": "Hello."})
    assert tie.score == 0.5 and not tie.passed and "tie" in tie.reason
    assert biased.compare(["Ann: hi"], ["Hi Ann."], ["Hello."]) == [0.5]
    assert (
        not JudgeVerifier(mode="pairwise", generator=Scripted(lambda t: "?"))
        .verify("x", {"question": "q", "reference": "y"})
        .gradable
    )


def test_pairwise_parsing_forms():
    assert parse_preference('noise {"winner": "B", "reason": "kinder"}') == "B"
    assert parse_preference("Winner: tie") == "tie"
    assert parse_preference("Response A is better because it greets.") == "A"
    assert parse_preference("Both are fine I guess") is None, "no choice stated: abstain"


def test_judge_without_generator_fails_with_one_line():
    judge = verifiers.get("judge", model="org/judge")  # a hub id: not checked offline
    with pytest.raises(JudgeUnavailable, match="no judge model to ask"):
        judge.verify("Hi", "q")


def test_judge_bad_options_are_one_line_each(tmp_path):
    (tmp_path / "notamodel").mkdir()
    cases = {
        "rubric": ({"rubric": "{{ questoin }}"}, "'questoin' is undefined"),
        "missing model": ({"model": str(tmp_path / "nope")}, "judge model folder not found"),
        "not a model": ({"model": str(tmp_path / "notamodel")}, "no config.json"),
        "mode": ({"mode": "listwise"}, "mode must be one of pointwise, pairwise"),
    }
    for why, (options, expected) in cases.items():
        problems = option_problems("judge", options)
        assert len(problems) == 1 and expected in problems[0], (why, problems)


# ---- reward model ----


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    """A tiny random sequence classifier saved like the reward_model stage's model/, with held-out pairs."""
    from transformers import AutoModelForSequenceClassification

    from pipelines.testing.tinymodel import build_tiny_model, build_tokenizer, save_tokenizer

    root = tmp_path_factory.mktemp("rm")
    causal = build_tiny_model(root / "causal", hidden_size=32, layers=1, heads=2)
    model = AutoModelForSequenceClassification.from_pretrained(causal, num_labels=1)
    model.config.pad_token_id = build_tokenizer().pad_token_id
    model.save_pretrained(root / "stage" / "model")
    save_tokenizer(build_tokenizer(), root / "stage" / "model")
    pairs = [{"prompt": "q0:", "chosen": "hi ann. ok.", "rejected": "NO!"} for i in range(6)]
    (root / "stage" / "heldout.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    return root


@pytest.mark.slow
def test_reward_model_threshold_and_normalisation_from_heldout(reward_model_dir):
    v = verifiers.get("reward_model", model=str(reward_model_dir / "stage" / "model"))
    cal = v.calibration
    assert cal["pairs"] == 6, "heldout.jsonl beside model/ sets the threshold"
    assert cal["threshold"] == pytest.approx((cal["mean_chosen"] + cal["mean_rejected"]) / 2)
    chosen, rejected = v.verify_batch(["hi ann. ok.", "NO!"], [{"question": "q0:"}, "q0:"])
    assert chosen.meta["raw"] == pytest.approx(cal["mean_chosen"], abs=1e-4)
    assert (chosen.score > 0.5) == (chosen.meta["raw"] >= cal["threshold"]), "0.5 sits at the threshold"
    assert chosen.passed != rejected.passed or cal["mean_chosen"] == cal["mean_rejected"]
    reward = v.as_reward()
    out = reward(prompts=["q0:", "q0:"], completions=[[{"role": "assistant", "content": "hi ann. ok."}], "NO!"])
    assert out == pytest.approx([chosen.score, rejected.score]), "TRL form: one float per completion"
    fixed = verifiers.get("reward_model", model=str(reward_model_dir / "stage" / "model"), threshold=1e9)
    assert not fixed.verify("x", "q").passed, "an explicit threshold wins over the held-out one"


def test_reward_model_dir_that_is_a_causal_lm_is_one_line(tmp_path):
    from pipelines.testing.tinymodel import build_tiny_model

    causal = build_tiny_model(tmp_path / "lm", hidden_size=16, layers=1, heads=2)
    problems = option_problems("reward_model", {"model": str(causal)})
    assert len(problems) == 1 and "is not a sequence classifier (architectures: LlamaForCausalLM)" in problems[0]
    assert "reward model folder not found" in option_problems("reward_model", {"model": str(tmp_path / "x")})[0]
