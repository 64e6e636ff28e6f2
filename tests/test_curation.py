"""Curation steps on crafted rows: each test says why a row should stay or go."""

from __future__ import annotations

import doctest
import logging
import random
import time
from functools import partial

import pytest

from pipelines import curation
from pipelines.contamination import contamination_report, decontaminate
from pipelines.curation import (
    answer_style,
    dedupe_exact,
    dedupe_near,
    filter_length,
    find_sensitive,
    jaccard,
    mix_general,
    ngrams,
    remove_sensitive,
    run_pipeline,
    style_report,
)

LONG = "First add the two numbers to get twelve, then divide the total by three to get four as the answer."

# -- duplicates -----------------------------------------------------------------------------


def test_dedupe_exact_folds_case_and_whitespace_and_keeps_the_first():
    rows = [{"a": "Paris", "id": 0}, {"a": "  paris ", "id": 1}, {"a": "Lyon", "id": 2}, {"a": "PARIS\n", "id": 3}]
    kept, log = dedupe_exact(rows, "a")
    assert [r["id"] for r in kept] == [0, 2]
    assert (log.name, log.rows_in, log.rows_out) == ("dedupe_exact", 4, 2)
    assert log.details["examples"] == [{"index": 1, "duplicate_of": 0}, {"index": 3, "duplicate_of": 0}]


def test_dedupe_exact_on_several_keys_needs_every_field_to_repeat():
    rows = [{"q": "1+1", "a": "2"}, {"q": "1+1", "a": "two"}, {"q": "1+1", "a": "2"}]
    kept, _ = dedupe_exact(rows, ("q", "a"))
    assert kept == rows[:2]  # same question, different answer: both kept


def test_dedupe_near_drops_a_one_word_edit_but_keeps_a_different_answer():
    rows = [
        {"a": LONG},
        {"a": LONG.replace("twelve", "12")},  # one word changed in 20: Jaccard of 5-grams ~0.6
        {"a": LONG.upper() + "  "},  # same words, other case and spacing: Jaccard 1
        {"a": "Multiply six by two, then divide by three: the answer is four."},
    ]
    kept, log = dedupe_near(rows, "a", threshold=0.8, ngram=5)
    assert kept == [rows[0], rows[1], rows[3]]
    assert log.details["examples"] == [{"index": 2, "duplicate_of": 0, "similarity": 1.0}]
    kept, _ = dedupe_near(rows, "a", threshold=0.5, ngram=5)
    assert kept == [rows[0], rows[3]]  # at 0.5 the one-word edit counts as a duplicate too


def test_dedupe_near_is_greedy_against_kept_rows_only():
    # A ~ B and B ~ C, but A and C are not alike: B goes, C stays (compared with A only).
    a = {"a": "one two three four five six"}
    b = {"a": "one two three four five six seven eight"}
    c = {"a": "one two three four five six seven eight nine ten eleven twelve"}
    assert jaccard(ngrams(a["a"], 1), ngrams(b["a"], 1)) >= 0.6
    assert jaccard(ngrams(b["a"], 1), ngrams(c["a"], 1)) >= 0.6
    assert jaccard(ngrams(a["a"], 1), ngrams(c["a"], 1)) < 0.6
    kept, _ = dedupe_near([a, b, c], "a", threshold=0.6, ngram=1)
    assert kept == [a, c]


def test_dedupe_near_treats_short_and_empty_texts_as_whole_shingles():
    rows = [{"a": "4"}, {"a": "4."}, {"a": "14"}, {"a": ""}, {"a": "   "}, {"a": None}]
    kept, _ = dedupe_near(rows, "a", threshold=0.8, ngram=5)
    assert kept == [{"a": "4"}, {"a": "14"}, {"a": ""}]  # "4." folds to "4"; empty texts are one group


@pytest.mark.parametrize("seed", range(5))
def test_dedupe_near_prefix_filter_agrees_with_brute_force(seed):
    # Random texts over a tiny vocabulary make many near-duplicates; the index must
    # find every pair that a full comparison finds (the filter has no false negatives).
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(8)]
    base = [" ".join(rng.choices(vocab, k=rng.randint(3, 14))) for _ in range(12)]
    texts = [t if rng.random() < 0.5 else t + " " + rng.choice(vocab) for t in base for _ in range(3)]
    rows = [{"a": t} for t in texts]
    threshold, n = rng.choice([0.5, 0.7, 0.8, 0.9]), rng.choice([1, 2, 3])
    sets = [ngrams(t, n) or {("",)} for t in texts]
    expected = []
    for i, s in enumerate(sets):
        if all(jaccard(s, sets[j]) < threshold for j in expected):
            expected.append(i)
    kept, _ = dedupe_near(rows, "a", threshold=threshold, ngram=n)
    assert kept == [rows[i] for i in expected]


def test_dedupe_near_rejects_bad_settings():
    with pytest.raises(ValueError, match="threshold"):
        dedupe_near([], "a", threshold=0)
    with pytest.raises(ValueError, match="ngram"):
        dedupe_near([], "a", ngram=0)


# -- lengths --------------------------------------------------------------------------------


def test_filter_length_bounds_are_inclusive_and_blank_is_empty():
    rows = [{"a": ""}, {"a": "   "}, {"a": "ab"}, {"a": "abcd"}, {"a": "abcde"}]
    kept, log = filter_length(rows, "a", min_chars=2, max_chars=4)
    assert kept == [{"a": "ab"}, {"a": "abcd"}]
    assert (log.details["too_short"], log.details["too_long"]) == (2, 1)


def test_filter_length_reads_chat_messages():
    rows = [{"m": [{"role": "assistant", "content": "x" * 10}]}, {"m": [{"role": "assistant", "content": "x"}]}]
    kept, _ = filter_length(rows, "m", min_chars=5)
    assert kept == rows[:1]


# -- secrets and e-mails --------------------------------------------------------------------

SECRETS = {
    "aws_access_key": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "github_token": "export GITHUB_TOKEN=ghp_" + "a1B2" * 9,
    "openai_key": "client = OpenAI(api_key=sk-proj-" + "Ab3d" * 8 + ")",
    "slack_token": "SLACK=xoxb-1234567890-abcdefghij",
    "google_api_key": "key=AIza" + "B" * 35,
    "stripe_key": "stripe.api_key = sk_live_" + "9" * 24,
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----",
    "assigned_secret": 'db_password = "S3cure!pass"',
    "email": "Contact me at jane.doe@acme-corp.com for details.",
}


@pytest.mark.parametrize(("kind", "text"), SECRETS.items())
def test_each_kind_of_secret_is_found(kind, text):
    assert kind in find_sensitive(text)


@pytest.mark.parametrize(
    "text",
    [
        'api_key = "YOUR_API_KEY"',  # a placeholder, not a key
        'token = "<token>"',
        "password = 'short'",  # too short to be a real secret
        "Write to user@example.com or admin@mail.example.org.",  # reserved example domains
        "Use sklearn; sk-learn is its old name.",  # sk- with too few characters after it
        "The akia tree and a PRIVATE KEY discussion.",
        "f(x) = x @ W.T + b",  # a matrix product is not an address
    ],
)
def test_ordinary_text_is_not_flagged(text):
    assert find_sensitive(text) == []


def test_secret_scan_stays_linear_on_long_junk():
    # Unbounded patterns backtrack quadratically on long runs of address-like characters:
    # about 20 s on this input before the fix, well under 0.1 s after.
    start = time.perf_counter()
    assert find_sensitive("a." * 25_000 + "x" * 50_000 + "a@" * 10_000) == []
    assert time.perf_counter() - start < 5.0


def test_style_check_stays_fast_on_a_pathological_select_list():
    start = time.perf_counter()
    assert answer_style("SELECT " + "a*" * 40 + "a ! FROM t") == "plain"
    assert time.perf_counter() - start < 1.0


def test_remove_sensitive_drops_rows_and_never_logs_the_secret():
    rows = [
        {"q": "How do I call the API?", "a": "Set " + SECRETS["github_token"]},
        {"q": "Mail?", "a": SECRETS["email"]},
        {"q": "2+2?", "a": "4"},
        {"q": "Keys?", "a": 'Use api_key = "YOUR_API_KEY" from the dashboard.'},
    ]
    kept, log = remove_sensitive(rows)
    assert kept == rows[2:]
    assert log.details["kinds"] == {"github_token": 1, "email": 1}
    assert log.details["examples"] == [{"index": 0, "kinds": ["github_token"]}, {"index": 1, "kinds": ["email"]}]
    assert "ghp_" not in str(log.to_dict()) and "jane" not in str(log.to_dict())
    kept_q_only, _ = remove_sensitive(rows, keys=["q"])  # only the question is scanned
    assert kept_q_only == rows


def test_remove_sensitive_allowed_domains_are_configurable():
    rows = [{"a": "write to help@acme-corp.com"}]
    assert remove_sensitive(rows, allowed_email_domains=("acme-corp.com",))[0] == rows


# -- answer style ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "style"),
    [
        ('{"name": "Ada", "age": 36}', "json"),
        ('```json\n{"name": "Ada"}\n```', "json"),  # a fenced JSON answer is still JSON
        ("SELECT * FROM users WHERE age > 30;", "sql_star"),
        ("```sql\nSELECT name, age FROM users;\n```", "sql_columns"),
        ("12 + 7 = 19, so the answer is \\boxed{19}.", "boxed"),
        ("\\boxed{\\frac{1}{2}}", "boxed"),  # nested braces
        ("<think>easy</think><answer>19</answer>", "tagged"),
        ("```python\nprint(1)\n```", "code"),
        ("The capital is Paris.", "plain"),
        ("Select the largest number from the list: 9.", "plain"),  # prose, not a query
        ("WITH t AS (SELECT id FROM u) SELECT * FROM t", "sql_columns"),  # first select list decides
        ("SELECT u.name, COUNT(*) AS n, price * qty total FROM u GROUP BY 1", "sql_columns"),
        ("\\boxed{3} is wrong; it is 4", "plain"),  # a boxed that does not end the answer
    ],
)
def test_answer_style(answer, style):
    assert answer_style(answer) == style


def test_style_report_passes_uniform_json_and_warns_on_a_mix():
    uniform = style_report([f'{{"a": {i}}}' for i in range(20)])
    assert uniform["dominant"] == "json" and uniform["shares"]["json"] == 1.0 and uniform["warning"] is None
    mixed = style_report(['{"a": 1}'] * 6 + ["a is 1"] * 4)
    assert mixed["dominant_share"] == 0.6 and "json 6, plain 4" in mixed["warning"]


def test_style_report_warns_on_mixed_sql_even_when_mostly_uniform():
    answers = ["SELECT id, name FROM t;"] * 19 + ["SELECT * FROM t;"]
    report = style_report(answers)
    assert report["dominant_share"] == 0.95
    assert report["shares"]["sql_star"] == 0.05 and "SELECT *" in report["warning"]


def test_style_report_on_boxed_math_and_no_answers():
    report = style_report(["so \\boxed{2}"] * 3)
    assert report["shares"]["boxed"] == 1.0 and report["warning"] is None
    assert style_report([])["rows"] == 0 and style_report([])["warning"] is None


# -- general data --------------------------------------------------------------------------


def test_mix_general_hits_the_share_of_the_final_pool_and_keeps_rl_order():
    rl = [{"rl": i} for i in range(95)]
    general = [{"general": i} for i in range(50)]
    pool, log = mix_general(rl, general, share=0.05, seed=3)
    assert len(pool) == 100 and log.details["general"] == 5 and log.details["share"] == 0.05
    assert [r for r in pool if "rl" in r] == rl  # a curriculum survives the mixing
    assert pool == mix_general(rl, general, share=0.05, seed=3)[0]
    assert log.warnings == []


def test_mix_general_warns_when_short_of_general_data_or_off_the_usual_share():
    pool, log = mix_general([{"rl": i} for i in range(10)], [{"general": 0}], share=0.5)
    assert len(pool) == 11  # wanted 10 general, only 1 given
    assert any("only 1 given" in w for w in log.warnings) and any("outside" in w for w in log.warnings)
    with pytest.raises(ValueError):
        mix_general([], [], share=1.0)
    assert mix_general([{"rl": 0}], [{"g": 0}], share=0.0)[0] == [{"rl": 0}]


# -- contamination --------------------------------------------------------------------------

TRAIN = [
    {"question": "A farmer has 17 sheep and all but 9 run away. How many sheep are left on the farm now?"},
    {"question": "Compute the sum of the first ten positive integers."},
]
EVAL = [
    {"question": "A farmer has 17 sheep and all but 9 run away. How many sheep are left on the farm now?"},  # copied
    {"question": "a farmer has 17 sheep and all but 9 run away; how many are left on the farm"},  # lightly edited
    {"question": "A baker bakes 17 loaves and sells all but 9 of them. How many loaves remain?"},  # same template
    {"question": "What is the derivative of x squared?"},  # unrelated
]


def test_contamination_reports_overlapping_eval_items():
    report = contamination_report(TRAIN, EVAL, "question", "question", ngram=8, threshold=0.5)
    assert [item["index"] for item in report["items"]] == [0, 1]
    assert report["items"][0]["overlap"] == 1.0 and report["items"][0]["text"].startswith("A farmer")
    assert report["contaminated"] == 2 and report["share"] == 0.5
    assert "2 of 4 eval items" in report["warning"]
    clean = contamination_report(TRAIN, EVAL[2:], "question", "question")
    assert clean["contaminated"] == 0 and clean["warning"] is None


def test_decontaminate_removes_the_training_rows_holding_eval_items():
    kept, log = decontaminate(TRAIN, EVAL[1:2], "question", "question", ngram=8)
    assert kept == TRAIN[1:]
    assert log.details["examples"][0]["index"] == 0 and log.details["examples"][0]["eval_index"] == 0


# -- pipeline -------------------------------------------------------------------------------


def test_run_pipeline_logs_rows_in_and_out_per_step(caplog):
    rows = [
        {"q": "2+2?", "a": "4", "label": "easy", "pass_rate": 0.9},
        {"q": "2+2?", "a": "4", "label": "easy", "pass_rate": 0.9},  # exact duplicate
        {"q": "email?", "a": "bob@corp.io", "label": "hard", "pass_rate": 0.2},  # an address
        {"q": "long?", "a": "x" * 500, "label": "hard", "pass_rate": 0.3},  # too long
        {"q": "17*3?", "a": "51", "label": "hard", "pass_rate": 0.4},
    ]
    steps = [
        partial(dedupe_exact, key=("q", "a")),
        partial(remove_sensitive, keys=["a"]),
        partial(filter_length, key="a", max_chars=100),
        partial(dedupe_near, key="q", threshold=0.8, ngram=2),
    ]
    with caplog.at_level(logging.INFO, logger="pipelines.curation"):
        out, logs = run_pipeline(rows, steps)
    assert [r["q"] for r in out] == ["2+2?", "17*3?"]
    assert [(s.name, s.rows_in, s.rows_out) for s in logs] == [
        ("dedupe_exact", 5, 4),
        ("remove_sensitive", 4, 3),
        ("filter_length", 3, 2),
        ("dedupe_near", 2, 2),
    ]
    assert "remove_sensitive: 4 -> 3 rows" in caplog.text
    assert logs[0].to_dict()["rows_out"] == 4


def test_module_doctests():
    result = doctest.testmod(curation)
    assert result.attempted > 0 and result.failed == 0
