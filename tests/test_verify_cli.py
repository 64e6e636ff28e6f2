"""``advisor verify``: score a file with a verifier, summary by status, clear errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from advisor.cli import main


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["verify", *map(str, args)], catch_exceptions=False)


def test_summary_counts_pass_fail_and_ungradable(tmp_path):
    data = write_rows(
        tmp_path / "d.jsonl",
        [
            {"response": "<answer>Paris</answer>", "answer": "paris"},  # right, case-insensitive
            {"response": "London", "answer": "paris"},  # wrong
            {"response": "Rome", "answer": None},  # no reference: cannot grade
        ],
    )
    out = tmp_path / "scored.jsonl"
    result = invoke("--verifier", "exact", "--data", data, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "1/2 passed (50.0%) of 3 rows" in result.output
    assert "skip: 1" in result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"]["passed"] for r in scored] == [True, False, False]
    assert scored[0]["verdict"]["extracted"] == "Paris"


def test_verifier_options_and_custom_fields(tmp_path):
    data = write_rows(tmp_path / "d.jsonl", [{"out": "abc123"}, {"out": "no digits"}])
    result = invoke("--verifier", "regex", "--option", r"pattern=\d+", "--data", data, "--response-field", "out")
    assert result.exit_code == 0, result.output
    assert "1/2 passed" in result.output


def test_unknown_verifier_bad_json_and_missing_field_exit_2(tmp_path):
    good = write_rows(tmp_path / "g.jsonl", [{"response": "x", "answer": "x"}])
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"response": "x"}\n{oops\n')
    cases = [
        (["--verifier", "telepathy", "--data", good], "unknown verifier 'telepathy'"),
        (["--verifier", "exact", "--data", bad], "b.jsonl: line 2: not valid JSON"),
        (["--verifier", "exact", "--data", good, "--response-field", "completion"], "row 1: no field 'completion'"),
        (["--verifier", "exact", "--data", tmp_path / "none.jsonl"], "file not found"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
