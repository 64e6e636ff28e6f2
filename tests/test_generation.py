"""Generation backends: hf on a tiny offline model, openai against the local server,
vllm on a GPU only."""

from __future__ import annotations

import importlib.util

import pytest

from pipelines.generation import (
    GenerationError,
    HFGenerator,
    OpenAIGenerator,
    make_generator,
    to_messages,
    truncate_at_stop,
)
from pipelines.testing.model_server import ModelServer
from pipelines.testing.openai_server import ScriptedServer

PROMPTS = ["1+2=", "12+34=", "hello there", "7*8="]  # different lengths, so batches pad


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against the
    neighbours' work and run ten times slower; these models are too small to gain."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return HFGenerator(str(tiny_model_dir), batch_size=8)


# -- helpers -----------------------------------------------------------------------------


def test_truncate_at_stop_cuts_before_the_earliest_stop():
    assert truncate_at_stop("ab\ncd####ef", ["####", "\n"]) == "ab"
    assert truncate_at_stop("abc", None) == "abc"
    assert truncate_at_stop("abc", ["x", ""]) == "abc"  # empty stop strings are ignored


def test_to_messages_wraps_a_string_as_one_user_message():
    assert to_messages("hi") == [{"role": "user", "content": "hi"}]
    conversation = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert to_messages(conversation) == conversation


def test_make_generator_rejects_unknown_backends():
    with pytest.raises(ValueError, match="hf, vllm, openai"):
        make_generator("tgi", "m")


def test_make_generator_builds_the_named_backend(tiny_model_dir):
    assert isinstance(make_generator("hf", str(tiny_model_dir), batch_size=2), HFGenerator)
    assert isinstance(make_generator("openai", "m", base_url="http://127.0.0.1:9/v1"), OpenAIGenerator)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_says_how_to_install():
    with pytest.raises(GenerationError, match="needs vLLM"):
        make_generator("vllm", "m")


# -- hf ----------------------------------------------------------------------------------


def test_hf_returns_n_completions_per_prompt_in_prompt_order(hf):
    out = hf.generate(PROMPTS, n=3, max_new_tokens=6, seed=0)
    assert len(out) == len(PROMPTS)
    assert all(len(samples) == 3 and all(isinstance(s, str) for s in samples) for samples in out)


def test_hf_batched_greedy_matches_one_prompt_at_a_time(tiny_model_dir, hf):
    # Left padding must not change what a prompt produces, and results must come back
    # in prompt order even though batches run longest-first.
    single = HFGenerator(str(tiny_model_dir), batch_size=1)
    batched = hf.generate(PROMPTS, n=1, temperature=0, max_new_tokens=8)
    assert batched == [single.generate([p], n=1, temperature=0, max_new_tokens=8)[0] for p in PROMPTS]


def test_hf_same_seed_same_samples_other_seed_other_samples(hf):
    a = hf.generate(PROMPTS, n=2, max_new_tokens=12, seed=11)
    b = hf.generate(PROMPTS, n=2, max_new_tokens=12, seed=11)
    c = hf.generate(PROMPTS, n=2, max_new_tokens=12, seed=12)
    assert a == b
    assert a != c
    assert a[0][0] != a[0][1]  # the n samples of one prompt are independent draws


def test_hf_greedy_is_deterministic_across_samples_and_calls(hf):
    first = hf.generate(PROMPTS, n=3, temperature=0, max_new_tokens=8, seed=1)
    again = hf.generate(PROMPTS, n=3, temperature=0, max_new_tokens=8, seed=2)  # seed is irrelevant
    assert first == again
    assert all(len(set(samples)) == 1 for samples in first)


def test_hf_decodes_only_new_tokens_without_special_tokens(hf):
    out = hf.generate(["12+34="], n=4, max_new_tokens=10, seed=0)[0]
    assert not any(s.startswith("12+34=") for s in out)
    assert not any(tok in s for s in out for tok in ("<bos>", "<pad>", "<eos>"))


def test_hf_stop_strings_cut_the_completion(hf):
    free = hf.generate(["12+34="], n=1, max_new_tokens=24, seed=5)[0][0]
    assert len(free) >= 6, "need a long enough sample to cut"
    stop = free[3:5]
    cut = hf.generate(["12+34="], n=1, max_new_tokens=24, seed=5, stop=[stop])[0][0]
    assert cut == free[: free.find(stop)]


def test_hf_conversational_prompts_go_through_the_chat_template(hf, monkeypatch):
    seen = []
    real_generate = hf.model.generate

    def spy(**kwargs):
        seen.append(kwargs["input_ids"])
        return real_generate(**kwargs)

    monkeypatch.setattr(hf.model, "generate", spy)
    conversation = [{"role": "user", "content": "1+2="}]
    out = hf.generate([conversation, "1+2="], n=2, max_new_tokens=4, seed=0)
    assert [len(s) for s in out] == [2, 2]
    tok = hf.tokenizer
    rows = [[t for t in row.tolist() if t != tok.pad_token_id] for row in seen[0]]
    expected_chat = tok("<bos><|user|>1+2=<eos><|assistant|>", add_special_tokens=False)["input_ids"]
    assert expected_chat in rows  # the template, with the assistant turn opened
    assert tok("1+2=")["input_ids"] in rows  # a plain string: bos + characters only


def test_hf_halves_the_batch_on_out_of_memory_and_still_returns_everything(tiny_model_dir, monkeypatch):
    gen = HFGenerator(str(tiny_model_dir), batch_size=8)
    real = gen._generate_batch
    sizes = []

    def flaky(batch, **kwargs):
        sizes.append(len(batch))
        if len(sizes) == 1:  # the first batch "runs out of memory"
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch, **kwargs)

    monkeypatch.setattr(gen, "_generate_batch", flaky)
    out = gen.generate(PROMPTS, n=3, max_new_tokens=4, seed=0)  # 12 rows
    assert sizes == [8, 4, 4, 4]
    assert gen.batch_size == 4 and gen.oom_retries == 1
    assert [len(s) for s in out] == [3] * len(PROMPTS)


def test_hf_out_of_memory_at_batch_size_one_is_a_clear_error(tiny_model_dir, monkeypatch):
    gen = HFGenerator(str(tiny_model_dir), batch_size=2)

    def always_oom(batch, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(gen, "_generate_batch", always_oom)
    with pytest.raises(GenerationError, match="even at batch size 1"):
        gen.generate(["1+2="], n=1, max_new_tokens=2)


def test_hf_other_runtime_errors_are_not_mistaken_for_oom(tiny_model_dir, monkeypatch):
    gen = HFGenerator(str(tiny_model_dir), batch_size=4)

    def broken(batch, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(gen, "_generate_batch", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        gen.generate(["1+2="], n=1, max_new_tokens=2)
    assert gen.batch_size == 4


def test_hf_reports_progress_in_finished_prompts(tiny_model_dir):
    seen = []
    gen = HFGenerator(str(tiny_model_dir), batch_size=3, on_progress=seen.append)
    gen.generate(PROMPTS, n=2, max_new_tokens=2)
    assert seen == sorted(seen) and seen[-1] == len(PROMPTS)
    assert len(seen) == 3  # 8 rows in batches of 3


def test_hf_rejects_bad_arguments(hf):
    with pytest.raises(ValueError, match="n must be"):
        hf.generate(["x"], n=0)
    with pytest.raises(ValueError, match="top_p"):
        hf.generate(["x"], top_p=0)


# -- openai, against the local server ------------------------------------------------------


def echo(messages):
    return "re: " + messages[-1]["content"]


@pytest.fixture(scope="module")
def hf_server(tiny_model_dir):
    """A real engine behind the OpenAI API: the tiny model through ``HFGenerator``."""
    with ModelServer(tiny_model_dir, model_name="tiny") as server:
        yield server


def test_openai_normal_request_n_choices_in_prompt_order(hf_server, hf):
    server = hf_server
    before = len(server.requests)
    gen = OpenAIGenerator("tiny", base_url=server.base_url, max_concurrency=4)
    prompts = [f"q{i}" for i in range(10)] + [[{"role": "user", "content": "chat"}]]
    out = gen.generate(prompts, n=3, temperature=0.7, top_p=0.9, max_new_tokens=5, seed=3, stop=["\n"])
    # each prompt's own samples, in order: the same conversation through hf with the same seed
    same = {"n": 3, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 5, "seed": 3, "stop": ["\n"]}
    assert out[4] == hf.generate([to_messages("q4")], **same)[0]
    assert out[-1] == hf.generate(prompts[-1:], **same)[0]
    sent = server.requests[before:]
    first = next(r for r in sent if r["messages"][0]["content"] == "q0")
    assert first["messages"] == [{"role": "user", "content": "q0"}]  # a string became a user message
    assert (first["n"], first["temperature"], first["top_p"], first["max_tokens"], first["seed"]) == (3, 0.7, 0.9, 5, 3)
    assert first["stop"] == ["\n"]
    assert len(sent) == len(prompts) and gen.retries == 0


def test_openai_applies_stop_strings_even_if_the_server_does_not():
    with ScriptedServer(reply=lambda m: "42\nextra") as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url)
        assert gen.generate(["q"], stop=["\n"]) == [["42"]]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_openai_retries_transient_failures_then_succeeds(status):
    with ScriptedServer(reply=echo, fail_first=[status]) as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url, retry_base_delay=0.01)
        assert gen.generate(["q"], n=2) == [["re: q", "re: q"]]
    assert server.statuses == [status, 200]
    assert gen.retries == 1 and gen.requests == 2


def test_openai_gives_up_after_max_retries_with_one_line():
    with ScriptedServer(reply=echo, always_status=502) as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url, max_retries=2, retry_base_delay=0.01)
        with pytest.raises(GenerationError, match="after 3 attempts") as info:
            gen.generate(["q"])
    assert len(server.requests) == 3
    assert "\n" not in str(info.value)


def test_openai_bad_key_is_an_auth_error_without_a_retry_storm():
    with ScriptedServer(reply=echo, api_key="right") as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url, api_key="wrong", max_concurrency=4)
        with pytest.raises(GenerationError, match="authentication failed .*HTTP 401.*OPENAI_API_KEY"):
            gen.generate([f"q{i}" for i in range(40)])
    assert gen.retries == 0
    assert len(server.requests) <= 4  # at most the requests already in flight


def test_openai_forbidden_is_an_auth_error():
    with ScriptedServer(reply=echo, always_status=403) as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url)
        with pytest.raises(GenerationError, match="authentication failed .*HTTP 403"):
            gen.generate(["q"])


def test_openai_unknown_model_is_a_not_found_error():
    with ScriptedServer(reply=echo, model_name="served") as server:
        gen = OpenAIGenerator("missing", base_url=server.base_url, retry_base_delay=0.01)
        with pytest.raises(GenerationError, match="model 'missing' not found .*HTTP 404"):
            gen.generate(["q"])
    assert gen.retries == 0


def test_openai_bad_request_is_not_retried():
    with ScriptedServer(reply=echo, always_status=400) as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url, retry_base_delay=0.01)
        with pytest.raises(GenerationError, match="HTTP 400"):
            gen.generate(["q"])
    assert len(server.requests) == 1


def test_openai_tops_up_when_the_server_returns_fewer_choices():
    with ScriptedServer(reply=echo, max_choices=1) as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url)
        assert gen.generate(["q"], n=3, seed=10) == [["re: q"] * 3]
    assert [r["n"] for r in server.requests] == [3, 1, 1]
    assert [r["seed"] for r in server.requests] == [10, 11, 12]  # the extra samples differ in seed


def test_openai_reads_base_url_and_key_from_the_environment(monkeypatch, tiny_model_dir, hf):
    with ModelServer(tiny_model_dir, api_key="env-key") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "env-key")
        out = OpenAIGenerator("tiny").generate(["1+2="], temperature=0, max_new_tokens=6)
    assert out == hf.generate([to_messages("1+2=")], temperature=0, max_new_tokens=6)


def test_openai_connection_refused_is_retried_then_reported():
    with ScriptedServer(reply=echo) as server:
        url = server.base_url
    gen = OpenAIGenerator("tiny", base_url=url, max_retries=1, retry_base_delay=0.01, timeout=2)  # server gone
    with pytest.raises(GenerationError, match="after 2 attempts"):
        gen.generate(["q"])
    assert gen.retries == 1


def test_openai_progress_counts_finished_prompts(hf_server):
    seen = []
    gen = OpenAIGenerator("tiny", base_url=hf_server.base_url, on_progress=seen.append)
    gen.generate(["a", "b", "c"], max_new_tokens=4)
    assert seen == [1, 2, 3]


def test_model_server_lists_its_models(tiny_model_dir):
    import openai

    with ModelServer({"judge": tiny_model_dir, "teacher": tiny_model_dir}) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["judge", "teacher"]


def test_model_server_answers_each_name_with_its_own_model(memorized):
    """Two different models on one port (a teacher and a judge): each name gets its own."""
    one = memorized("server-yes", [("Is 12+34=46?", "yes")])
    two = memorized("server-no", [("Is 12+34=46?", "no")])
    greedy = {"temperature": 0, "max_new_tokens": 8}
    with ModelServer({"judge-a": one, "judge-b": two}) as server:
        a = OpenAIGenerator("judge-a", base_url=server.base_url).generate(["Is 12+34=46?"], **greedy)
        b = OpenAIGenerator("judge-b", base_url=server.base_url).generate(["Is 12+34=46?"], **greedy)
    assert (a, b) == ([["yes"]], [["no"]])
    assert b == HFGenerator(str(two)).generate([to_messages("Is 12+34=46?")], **greedy), "the same engine as hf"
    assert server.generated == {"judge-a": 1, "judge-b": 1}


def test_local_server_answers_from_an_hf_model_directory(tiny_model_dir, hf):
    with ModelServer(tiny_model_dir, model_name="tiny") as server:
        gen = OpenAIGenerator("tiny", base_url=server.base_url, max_concurrency=2)
        out = gen.generate(["1+2=", [{"role": "user", "content": "12+34="}]], n=2, temperature=0, max_new_tokens=6)
    # The server wraps every prompt as chat, so the same conversation through hf matches.
    direct = hf.generate(
        [to_messages("1+2="), [{"role": "user", "content": "12+34="}]], n=2, temperature=0, max_new_tokens=6
    )
    assert out == direct


# -- vllm (GPU only) -----------------------------------------------------------------------


@pytest.mark.gpu
def test_vllm_generates_n_per_prompt_from_a_saved_tiny_model(tmp_path):
    pytest.importorskip("vllm")
    from pipelines.testing.tinymodel import build_tiny_model

    # head_dim 64: a size every vLLM attention backend supports.
    path = build_tiny_model(tmp_path / "tiny", hidden_size=128, layers=2, heads=2)
    gen = make_generator("vllm", str(path), gpu_memory_utilization=0.3, enforce_eager=True)
    prompts = ["1+2=", [{"role": "user", "content": "12+34="}], "hello"]
    out = gen.generate(prompts, n=3, temperature=1.0, max_new_tokens=8, seed=0)
    assert [len(s) for s in out] == [3, 3, 3]
    assert out == gen.generate(prompts, n=3, temperature=1.0, max_new_tokens=8, seed=0)  # seeded
    greedy = gen.generate(prompts, n=2, temperature=0, max_new_tokens=8)
    assert all(a == b for a, b in greedy)
