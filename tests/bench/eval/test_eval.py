"""``kimi-modes eval``: answer extraction and normalisation, the problems file, the lm-eval task
it generates, and the command run for real (a subprocess, lm-eval inside) against the
simulated engine — directly and behind the gateway, scripted to answer right or wrong — and
against the gateway on the embedded model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import pytest

from kimi_modes.bench.eval.answers import (
    GSM8K_IGNORE,
    canonical_number,
    extract_answer,
    normalise,
)
from kimi_modes.bench.eval.config import SAMPLE_DATA, EvalError, EvalTarget, targets_for
from kimi_modes.bench.eval.problems import load_problems, parse_target, write_task_files
from kimi_modes.bench.eval.task import PROMPT, TASK_NAME, task_config

REPO = Path(__file__).resolve().parents[3]

# The runs need the optional lm-eval (pip install 'kimi-modes[eval]').
needs_lm_eval = pytest.mark.skipif(find_spec("lm_eval") is None, reason="lm-eval not installed")

# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize(("text", "number"), [
    ("1,250", "1250"), ("$68", "68"), ("2.50", "2.5"), ("68.00", "68"), ("007", "7"),
    ("-3", "-3"), ("+4", "4"), ("0.0", "0"), ("-0", "0"), (".5", "0.5"), ("$ 1,000,000", "1000000"),
])
def test_canonical_number(text: str, number: str) -> None:
    assert canonical_number(text) == number


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "-", ".", "12a"])
def test_canonical_number_refuses_what_is_not_a_number(text: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        canonical_number(text)


@pytest.mark.parametrize(("reply", "flexible", "strict"), [
    ("36 - 9 = 27 pencils.\nThe answer is 27.", "27", "27"),
    ("The final answer is $1,250.00", "1250", "1250"),
    ("So the result is\n#### 140", "140", "140"),
    ("Answer: 36", "36", "36"),
    ("**The answer is** **504**", "504", "504"),
    ("Thus $\\boxed{21}$.", "21", "21"),
    ("\\boxed{\\$32}", "32", "32"),
    # The last stated answer wins, even over numbers after it.
    ("The answer is 10. Wait, no: the answer is 12. (checked in 3 steps)", "12", "12"),
    # No stated answer: the last number, which strict mode does not take.
    ("She has 36 - 9 = 27 pencils left.", "27", None),
    ("It costs $2.50 per kilogram.", "2.5", None),
    ("Between 2-3 hours.", "3", None),
    ("A loss of -4 dollars.", "-4", None),
    ("I do not know.", None, None),
    ("", None, None),
    (None, None, None),
])
def test_extract_answer(reply: str | None, flexible: str | None, strict: str | None) -> None:
    assert extract_answer(reply) == flexible
    assert extract_answer(reply, strict=True) == strict


def test_normalise_is_what_lm_evals_exact_match_compares() -> None:
    metrics = pytest.importorskip("lm_eval.api.metrics")
    pairs = [("$1,250.", "1250"), ("1250", "#### 1250"), ("18.", "18"), ("18", "18.0"),
             ("ABC", "abc"), ("The answer is 5", "5")]
    for prediction, reference in pairs:
        ours = normalise(prediction) == normalise(reference)
        theirs = metrics.exact_match_hf_evaluate(
            predictions=[prediction], references=[reference],
            regexes_to_ignore=list(GSM8K_IGNORE), ignore_case=True)["exact_match"]
        assert ours == bool(theirs), (prediction, reference)
    assert normalise("$1,250.") == "1250"


# --------------------------------------------------------------------------- problems


def test_parse_target_reads_gsm8k_answers_and_plain_numbers() -> None:
    assert parse_target("Maya has 3 * 12 = <<3*12=36>>36.\n#### 36") == ("Maya has 3 * 12 = 36.",
                                                                         "36")
    assert parse_target("#### 1,250") == ("", "1250")
    assert parse_target(88) == ("", "88")
    assert parse_target(2.5) == ("", "2.5")
    assert parse_target(" 42 ") == ("", "42")
    for bad in ("twelve", "#### twelve", True, None, [1], float("nan")):
        with pytest.raises(ValueError, match="answer"):
            parse_target(bad)


def test_the_shipped_sample_is_valid_and_its_targets_check_out() -> None:
    problems = load_problems(SAMPLE_DATA)
    assert 8 <= len(problems) <= 12
    assert len({p.question for p in problems}) == len(problems)
    for p in problems:
        # Each worked solution (where there is one) ends at its own target number.
        if p.rationale:
            assert extract_answer(p.rationale) == p.target, p.question


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "q", "answer": 1}\nnot json\n', r":2: not valid JSON"),
    ('[1, 2]\n', r":1: each line must be a JSON object"),
    ('{"answer": "#### 3"}\n', r":1: 'question' must be a non-empty string"),
    ('{"question": "q"}\n', r":1: 'answer' is missing"),
    ('{"question": "q", "answer": "no number"}\n', r":1: 'answer' must end with '#### <number>'"),
    ("\n\n", "holds no problems"),
])
def test_load_problems_names_the_line_of_a_bad_row(tmp_path: Path, content: str,
                                                    message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(EvalError, match=message):
        load_problems(path)


def test_load_problems_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match=r"cannot read .*nope\.jsonl"):
        load_problems(tmp_path / "nope.jsonl")


def test_write_task_files_leaves_the_fewshot_examples_out_of_the_test(tmp_path: Path) -> None:
    problems = load_problems(SAMPLE_DATA)
    test, shots, n = write_task_files(problems, tmp_path, num_fewshot=3, limit=4)
    assert n == 4 and shots is not None
    tested = [json.loads(line)["question"] for line in test.read_text().splitlines()]
    shown = [json.loads(line)["question"] for line in shots.read_text().splitlines()]
    assert shown == [p.question for p in problems[:3]]
    assert tested == [p.question for p in problems[3:7]]
    assert write_task_files(problems, tmp_path, num_fewshot=0)[1:] == (None, len(problems))
    with pytest.raises(EvalError, match="none is left to test"):
        write_task_files(problems, tmp_path, num_fewshot=len(problems))


# --------------------------------------------------------------------------- task config


def test_task_config_is_lm_evals_gsm8k_scoring_with_a_chat_prompt(tmp_path: Path) -> None:
    config = task_config(tmp_path / "t.jsonl", max_tokens=321,
                         extra_body={"chat_template_kwargs": {"thinking": False}})
    assert config["task"] == TASK_NAME
    assert config["dataset_path"] == "json"
    assert config["dataset_kwargs"]["data_files"] == {"test": str(tmp_path / "t.jsonl")}
    assert config["output_type"] == "generate_until"
    assert config["metric_list"][0]["metric"] == "exact_match"
    assert config["metric_list"][0]["regexes_to_ignore"] == list(GSM8K_IGNORE)
    assert config["generation_kwargs"] == {
        "chat_template_kwargs": {"thinking": False}, "until": [], "max_gen_toks": 321,
        "do_sample": False, "temperature": 0.0}
    assert [f["name"] for f in config["filter_list"]] == ["flexible-extract", "strict-match"]
    assert "fewshot_config" not in config
    sampled = task_config(tmp_path / "t.jsonl", extra_body={"temperature": 1.0, "top_p": 0.95})
    assert sampled["generation_kwargs"]["temperature"] == 1.0
    assert sampled["generation_kwargs"]["top_p"] == 0.95
    with pytest.raises(ValueError, match="fewshot_file"):
        task_config(tmp_path / "t.jsonl", num_fewshot=2)


def test_lm_eval_builds_the_task_offline(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tasks = pytest.importorskip("lm_eval.tasks")
    problems = load_problems(SAMPLE_DATA)
    test, shots, n = write_task_files(problems, tmp_path, num_fewshot=2)
    config = task_config(test, fewshot_file=shots, num_fewshot=2, cache_dir=tmp_path / "cache")
    task = tasks.TaskManager(include_defaults=False).load([config])["tasks"][TASK_NAME]
    docs = list(task.test_docs())
    assert len(docs) == n == len(problems) - 2
    assert docs[0]["question"] == problems[2].question
    assert task.doc_to_text(docs[0]) == PROMPT.replace("{{question}}", problems[2].question)
    assert task.doc_to_target(docs[0]) == problems[2].target
    shots_docs = list(task.fewshot_docs())
    assert [d["question"] for d in shots_docs] == [p.question for p in problems[:2]]
    # Each filter turns replies into extracted answers.
    for ensemble in task._filters:
        strict = ensemble.name == "strict-match"
        out = ensemble.filters[0]().apply([["so 27 left"], ["The answer is $1,250."]], docs[:2])
        assert out == [["[invalid]" if strict else "27"], ["1250"]]


# --------------------------------------------------------------------------- targets


def test_targets_for_models_modes_and_the_thinking_switch() -> None:
    assert targets_for(["a", "b"], []) == [EvalTarget("a", "a"), EvalTarget("b", "b")]
    assert [t.model for t in targets_for([], ["instant", "thinking"])] == [
        "kimi-k2.5-instant", "kimi-k2.5-thinking"]
    switched = targets_for(["moonshotai/Kimi-K2.5"], ["thinking", "instant"],
                           {"chat_template_kwargs": {"x": 1}, "top_p": 0.9})
    assert [(t.label, t.model, t.extra_body) for t in switched] == [
        ("moonshotai/Kimi-K2.5 (thinking)", "moonshotai/Kimi-K2.5",
         {"chat_template_kwargs": {"x": 1, "thinking": True}, "top_p": 0.9}),
        ("moonshotai/Kimi-K2.5 (instant)", "moonshotai/Kimi-K2.5",
         {"chat_template_kwargs": {"x": 1, "thinking": False}, "top_p": 0.9}),
    ]
    for models, modes, message in [([], ["agent"], "unknown mode"),
                                   (["a", "b"], ["instant"], "at most one --model"),
                                   (["a", "a"], [], "named once")]:
        with pytest.raises(EvalError, match=message):
            targets_for(models, modes)


# --------------------------------------------------------------------------- the command


def run_eval_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kimi_modes", "eval", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def answer_script(path: Path, reply: Callable[[int, str], str]) -> Path:
    """A simulated-engine script with one rule per sample problem: the question (its start,
    as a regex) → ``reply(index, target)`` as the content, after reasoning that names a wrong
    number (it must not reach the scoring: the gateway keeps reasoning out of the content)."""
    rules = [
        {"name": f"problem {i}", "match": {"user": re.escape(p.question[:70])},
         "reply": {"reasoning": "A first guess: the answer is 999999.",
                   "content": reply(i, p.target).replace("$", "$$")}}  # $$: a dollar
        for i, p in enumerate(load_problems(SAMPLE_DATA))
    ]
    path.write_text(json.dumps({"rules": rules}))
    return path


def sent_thinking_switches(sim_url: str) -> set[Any]:
    stats = httpx.get(sim_url + "/sim/stats").json()
    return {(r["body"].get("chat_template_kwargs") or {}).get("thinking")
            for r in stats["last_requests"] if r["path"] == "/v1/chat/completions"}


@needs_lm_eval
def test_instant_and_thinking_side_by_side_all_right_behind_the_gateway(
    tmp_path: Path, start_simulator: Callable[..., Any], start_gateway: Callable[..., Any],
    upstream_toml: Callable[..., str],
) -> None:
    script = answer_script(tmp_path / "right.json",
                           lambda i, target: f"Step by step.\nThe answer is {target}.")
    sim = start_simulator("--script", str(script), "--ttft", "0", "--tpot", "0")
    gateway = start_gateway(upstream_toml(sim.v1))
    out = tmp_path / "result.json"
    result = run_eval_cli("--base-url", gateway.url, "--modes", "instant,thinking",
                          "--output", str(out), "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    n = len(load_problems(SAMPLE_DATA))
    table = result.stdout.splitlines()
    assert table[0].split()[:3] == ["model", "accuracy", "strict"]
    for label in ("kimi-k2.5-instant", "kimi-k2.5-thinking"):
        row = next(line for line in table if line.startswith(label + " "))
        assert "100.0% ± 0.0%" in row and f" {n} " in row
    report = json.loads(out.read_text())
    assert list(report["models"]) == ["kimi-k2.5-instant", "kimi-k2.5-thinking"]
    for entry in report["models"].values():
        assert entry["n"] == n and entry["accuracy"] == 1.0 and entry["strict_accuracy"] == 1.0
        assert entry["no_answer"] == 0 and entry["wall_s"] > 0
        assert [s["index"] for s in entry["samples"]] == list(range(n))
        assert all(s["extracted"] == s["target"] for s in entry["samples"])
    # The gateway set the switch upstream for each mode.
    assert sent_thinking_switches(sim.url) == {True, False}


@needs_lm_eval
def test_exact_accuracy_when_some_answers_are_wrong(
    tmp_path: Path, start_simulator: Callable[..., Any],
) -> None:
    wrong, unstated = {0, 5, 9}, {2, 7}

    def reply(i: int, target: str) -> str:
        if i in wrong:
            return f"The answer is {float(target) + 1:g}."
        if i in unstated:  # right, in another form, but not in the asked one
            return f"So that makes ${float(target):,.2f} in the end."
        if i == 3:
            return f"\\boxed{{{target}}}"
        return f"The final answer is ${float(target):.2f}"

    script = answer_script(tmp_path / "mixed.json", reply)
    sim = start_simulator("--script", str(script), "--ttft", "0", "--tpot", "0")
    out = tmp_path / "result.json"
    # Straight at the engine (a vLLM stand-in): one model id, the switch via the body.
    result = run_eval_cli("--base-url", sim.v1, "--model", "moonshotai/Kimi-K2.5",
                          "--modes", "instant,thinking", "--output", str(out))
    assert result.returncode == 0, result.stderr
    n = len(load_problems(SAMPLE_DATA))
    report = json.loads(out.read_text())["models"]
    assert list(report) == ["moonshotai/Kimi-K2.5 (instant)", "moonshotai/Kimi-K2.5 (thinking)"]
    for entry in report.values():
        assert entry["n"] == n
        assert entry["accuracy"] == pytest.approx((n - len(wrong)) / n)
        assert entry["strict_accuracy"] == pytest.approx((n - len(wrong) - len(unstated)) / n)
        assert entry["accuracy_stderr"] > 0
        assert {s["index"] for s in entry["samples"] if not s["correct"]} == wrong
    assert sent_thinking_switches(sim.url) == {True, False}


@needs_lm_eval
def test_limit_fewshot_and_extra_body_reach_the_requests(
    tmp_path: Path, start_simulator: Callable[..., Any],
) -> None:
    script = answer_script(tmp_path / "right.json", lambda i, target: f"The answer is {target}.")
    sim = start_simulator("--script", str(script), "--ttft", "0", "--tpot", "0")
    out = tmp_path / "r.json"
    result = run_eval_cli("--base-url", sim.url, "--model", "moonshotai/Kimi-K2.5",
                          "--num-fewshot", "2", "--limit", "3", "--max-tokens", "77",
                          "--extra-body", '{"top_k": 5}', "-o", str(out))
    assert result.returncode == 0, result.stderr
    entry = json.loads(out.read_text())["models"]["moonshotai/Kimi-K2.5"]
    problems = load_problems(SAMPLE_DATA)
    assert entry["n"] == 3 and entry["accuracy"] == 1.0
    assert [s["question"] for s in entry["samples"]] == [p.question for p in problems[2:5]]
    bodies = [r["body"] for r in httpx.get(sim.url + "/sim/stats").json()["last_requests"]
              if r["body"] and r["body"].get("max_tokens") == 77]
    assert len(bodies) == 3
    for body in bodies:
        assert body["top_k"] == 5 and body["temperature"] == 0
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["user", "assistant", "user", "assistant", "user"]
        assert body["messages"][1]["content"].endswith(f"The answer is {problems[0].target}.")


@needs_lm_eval
@pytest.mark.slow
@pytest.mark.embedded
def test_a_tiny_run_on_the_embedded_model(embedded_gateway: Any, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded engine needs llama-cpp-python")
    out = tmp_path / "embedded.json"
    result = run_eval_cli("--base-url", embedded_gateway.url, "--modes", "instant,thinking",
                          "--limit", "2", "--max-tokens", "48", "--concurrency", "1",
                          "--output", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert list(report["models"]) == ["kimi-k2.5-instant", "kimi-k2.5-thinking"]
    for entry in report["models"].values():
        assert entry["n"] == 2 and len(entry["samples"]) == 2
        assert 0.0 <= entry["accuracy"] <= 1.0 and 0.0 <= entry["strict_accuracy"] <= 1.0
    assert "kimi-k2.5-thinking" in result.stdout


# --------------------------------------------------------------------------- bad input


def test_bad_input_gives_one_line_errors(tmp_path: Path, unused_port: int) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "How many?", "answer": "many"}\n')
    cases = [
        (["--data", str(tmp_path / "missing.jsonl")], "cannot read"),
        (["--data", str(tmp_path)], "cannot read"),
        (["--data", str(bad)], "bad.jsonl:1: 'answer' must end with"),
        (["--modes", "agent"], "unknown mode 'agent'"),
        (["--extra-body", "[1]"], "--extra-body must be a JSON object"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--base-url", "localhost:8000"], "--base-url must be an http(s) URL"),
        (["--base-url", f"http://127.0.0.1:{unused_port}"], "cannot reach"),
    ]
    for args, message in cases:
        line = one_line_error(run_eval_cli(*args, "-o", str(tmp_path / "never.json")))
        assert message in line, (args, line)
    assert not (tmp_path / "never.json").exists()


@needs_lm_eval
def test_an_unreachable_endpoint_fails_before_any_evaluation(tmp_path: Path,
                                                            unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}"
    line = one_line_error(run_eval_cli("--base-url", url, "--modes", "instant,thinking",
                                       "-o", str(tmp_path / "x.json")))
    assert line.startswith(f"error: cannot reach {url}/v1/chat/completions: ")


@needs_lm_eval
def test_an_unknown_model_fails_with_the_servers_message(
    start_simulator: Callable[..., Any], tmp_path: Path,
) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    line = one_line_error(run_eval_cli("--base-url", sim.url, "--model", "no-such-model",
                                       "-o", str(tmp_path / "x.json")))
    assert "no-such-model: " in line and "HTTP 404" in line


def test_without_lm_eval_it_says_how_to_install(tmp_path: Path) -> None:
    # lm-eval made unimportable in a fresh interpreter, as on an install without the extra.
    code = ("import sys; sys.modules['lm_eval'] = None; sys.argv = ['kimi-modes', 'eval', "
            f"'--model', 'x', '-o', {str(tmp_path / 'x.json')!r}]; "
            "from kimi_modes.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    line = one_line_error(result)
    assert "pip install 'kimi-modes[eval]'" in line and "torch" in line
