"""``kimi-modes bench serve``: the request bodies, the arrival maths, the metrics on known
timestamps, the SSE reading, and the command run as a subprocess against the simulated engine
and the gateway in front of it."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kimi_modes.bench.serve.arrivals import arrival_times
from kimi_modes.bench.serve.client import RequestOutput, SSEReader, _StreamState
from kimi_modes.bench.serve.datasets import (
    random_requests,
)
from kimi_modes.bench.serve.metrics import (
    MetricsOptionError,
    calculate_metrics,
    parse_goodput,
    parse_metric_percentiles,
    parse_percentile_metrics,
    peak_concurrency,
    summarize,
    tokens_per_second,
)
from kimi_modes.bench.serve.results import DETAILED_FIELDS, result_filename
from kimi_modes.bench.serve.run import BenchmarkError, ServeConfig, build_input
from kimi_modes.simulator.tokenize import count_tokens


def test_request_bodies_follow_vllm_and_let_the_sample_win() -> None:
    chat = ServeConfig(model="m", ignore_eos=True, api_key="k",
                       extra_body={"temperature": 0.1, "chat_template_kwargs": {"thinking": False}})
    [sample] = random_requests(1, input_len=5, output_len=3)
    sample.body = {"temperature": 0.9}
    request = build_input(chat, "m", sample, 4)
    assert request.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert request.body == {
        "model": "m", "messages": [{"role": "user", "content": sample.prompt}],
        "max_completion_tokens": 3, "ignore_eos": True, "temperature": 0.9,
        "chat_template_kwargs": {"thinking": False},
    }
    assert request.headers["Authorization"] == "Bearer k"
    assert request.headers["x-request-id"].endswith("-4")
    completions = ServeConfig(base_url="http://h:1/v1/", endpoint="/v1/completions")
    request = build_input(completions, "m", sample, 0)
    assert request.url == "http://h:1/v1/completions"
    assert request.body["max_tokens"] == 3 and request.body["prompt"] == sample.prompt
    with pytest.raises(BenchmarkError, match="endpoint"):
        ServeConfig(endpoint="/v1/embeddings")


# --------------------------------------------------------------------------- arrivals


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0, *times], times, strict=False)]


def test_infinite_rate_sends_everything_at_once() -> None:
    assert arrival_times(5, float("inf"), 1.0, 0) == [0.0] * 5


@pytest.mark.parametrize(("burstiness", "cv"), [(1.0, 1.0), (4.0, 0.5), (0.25, 2.0)])
def test_arrivals_are_gamma_with_mean_one_over_rate(burstiness: float, cv: float) -> None:
    n, rate = 40000, 8.0
    times = arrival_times(n, rate, burstiness, seed=11)
    gaps = _gaps(times)
    assert times[-1] == pytest.approx(n / rate)  # vLLM rescales to exactly N / rate
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=1e-9)
    # A gamma of shape k has a coefficient of variation 1/sqrt(k).
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(cv, rel=0.05)
    assert times == sorted(times)
    assert arrival_times(n, rate, burstiness, seed=11) == times
    assert arrival_times(n, rate, burstiness, seed=12) != times


def test_infinite_burstiness_gives_even_gaps() -> None:
    gaps = _gaps(arrival_times(10, 4.0, float("inf"), 0))
    assert gaps == pytest.approx([0.25] * 10)


# --------------------------------------------------------------------------- metrics


def _out(start: float, ttft: float, itl: list[float], tokens: int, prompt: int = 10,
         ok: bool = True) -> RequestOutput:
    return RequestOutput(success=ok, start_time=start, ttft=ttft, itl=itl,
                         latency=ttft + sum(itl), output_tokens=tokens, prompt_len=prompt,
                         error="" if ok else "HTTP 500")


def test_metrics_on_known_timestamps() -> None:
    outputs = [
        _out(0.0, 0.1, [0.02, 0.02, 0.02], 4),  # e2el .16, tpot .02
        _out(0.5, 0.3, [0.05, 0.05], 5),  # e2el .4, tpot .1/4 = .025 (5 tokens, 3 chunks)
        _out(1.0, 0.2, [], 1),  # one token: no TPOT; counts as 0 for goodput
        _out(1.2, 0.0, [], 0, ok=False),
    ]
    m = calculate_metrics(outputs, 2.0, {"ttft": 250, "tpot": 22})
    assert (m.completed, m.failed) == (3, 1)
    assert (m.total_input, m.total_output) == (30, 10)
    assert m.ttfts == pytest.approx([0.1, 0.3, 0.2])
    assert m.tpots == pytest.approx([0.02, 0.025])
    assert m.itls == pytest.approx([0.02] * 3 + [0.05] * 2)
    assert m.e2els == pytest.approx([0.16, 0.4, 0.2])
    assert m.request_throughput == 1.5
    assert m.output_throughput == 5.0
    assert m.total_token_throughput == 20.0
    assert m.request_goodput == 1.0  # requests 1 and 3 meet both SLOs; 2 misses both
    assert m.max_concurrent_requests == 1  # [0, .16), [.5, .9), [1, 1.2): never overlapping
    tokens, active = tokens_per_second(outputs)
    assert tokens == [7.0, 1.0, 0.0]
    assert active == [2.0, 1.0, 0.0]

    result, lines = summarize(
        m, outputs, duration_s=2.0, request_rate=float("inf"), max_concurrency=None,
        goodput={"ttft": 250}, percentile_metrics=["ttft", "tpot", "itl", "e2el"],
        percentiles=[50, 99.9],
    )
    assert result["mean_ttft_ms"] == pytest.approx(200.0)
    assert result["median_ttft_ms"] == pytest.approx(200.0)
    assert result["std_ttft_ms"] == pytest.approx(statistics.pstdev([100, 300, 200]))
    assert result["p50_ttft_ms"] == pytest.approx(200.0)
    assert result["p99.9_ttft_ms"] == pytest.approx(299.8)  # numpy: linear interpolation
    assert result["mean_tpot_ms"] == pytest.approx(22.5)
    assert result["mean_e2el_ms"] == pytest.approx(1000 * (0.16 + 0.4 + 0.2) / 3)
    assert result["output_lens"] == [4, 5, 1, 0]
    assert result["errors"] == ["", "", "", "HTTP 500"]
    assert result["request_goodput"] == m.request_goodput
    assert lines[0] == "============ Serving Benchmark Result ============"
    assert lines[-1] == "=" * 50
    assert any(line.startswith("P99.9 TTFT (ms):") for line in lines)
    assert "-----Time per Output Token (excl. 1st token)------" in lines


def test_peak_concurrency_counts_overlaps_with_half_open_intervals() -> None:
    outputs = [_out(0.0, 1.0, [], 1), _out(0.5, 1.0, [], 1), _out(1.0, 1.0, [], 1),
               _out(0.2, 0.1, [], 1, ok=False)]
    assert peak_concurrency(outputs) == 2  # the first ends exactly when the third starts


def test_without_goodput_the_key_is_null_and_queue_metrics_need_a_concurrency() -> None:
    outputs = [_out(0.0, 0.1, [0.01], 2)]
    outputs[0].client_queue_time = 0.5
    m = calculate_metrics(outputs, 1.0, {})
    metrics = ["ttft", "client_queue_time", "e2el_including_client_queue"]
    result, _ = summarize(m, outputs, duration_s=1.0, request_rate=float("inf"),
                          max_concurrency=None, goodput={}, percentile_metrics=metrics,
                          percentiles=[99])
    assert result["request_goodput"] is None
    assert "mean_client_queue_time_ms" not in result
    result, _ = summarize(m, outputs, duration_s=1.0, request_rate=5.0, max_concurrency=2,
                          goodput={}, percentile_metrics=metrics, percentiles=[99])
    assert result["mean_client_queue_time_ms"] == pytest.approx(500.0)
    assert result["mean_e2el_including_client_queue_ms"] == pytest.approx(610.0)


def test_option_parsers() -> None:
    assert parse_goodput(["ttft:500", "tpot:50", "e2el:1e3"]) == {
        "ttft": 500.0, "tpot": 50.0, "e2el": 1000.0}
    for bad in (["itl:5"], ["ttft"], ["ttft:-1"], ["ttft:x"]):
        with pytest.raises(MetricsOptionError):
            parse_goodput(bad)
    assert parse_percentile_metrics("ttft,e2el") == ["ttft", "e2el"]
    with pytest.raises(MetricsOptionError):
        parse_percentile_metrics("ttft,latency")
    assert parse_metric_percentiles("25,50,99.9") == [25.0, 50.0, 99.9]
    with pytest.raises(MetricsOptionError):
        parse_metric_percentiles("101")


def test_result_filename_is_vllms() -> None:
    config = ServeConfig(max_concurrency=4)
    result = {"model_id": "moonshotai/Kimi-K2.5", "date": "20260101-120000"}
    assert result_filename(result, config, label=None, result_dir=None, result_filename=None) \
        == Path("openai-chat-infqps-concurrency4-Kimi-K2.5-20260101-120000.json")
    config = ServeConfig(request_rate=10, endpoint="/v1/completions")
    path = result_filename(result, config, label="x", result_dir=Path("d"), result_filename=None)
    assert path == Path("d/x-10.0qps-Kimi-K2.5-20260101-120000.json")


# --------------------------------------------------------------------------- SSE reading


def test_sse_reader_joins_events_split_across_reads() -> None:
    reader = SSEReader()
    assert reader.feed(b'data: {"a"') == []
    assert reader.feed(b": 1}\n\n: ping\n\ndata: x\r\n") == ['{"a": 1}']
    assert reader.feed(b"\r\nevent: e\ndata: l1\ndata: l2\n\ndata: [DONE]") == ["x", "l1\nl2"]
    assert reader.close() == ["[DONE]"]


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
           usage: dict[str, int] | None = None) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body: dict[str, Any] = {"choices": choices}
    if usage:
        body["usage"] = usage
    return json.dumps(body)


def test_chat_stream_timing_skips_the_role_opener_and_counts_reasoning() -> None:
    state = _StreamState(chat=True, start=10.0)
    state.handle(_chunk({"role": "assistant", "content": ""}), 10.05)
    state.handle(_chunk({"reasoning_content": "Hmm"}), 10.2)
    state.handle(_chunk({"reasoning": " so"}), 10.3)
    state.handle(_chunk({"content": "Hi"}), 10.35)
    state.handle(_chunk({}, finish="stop"), 10.5)
    state.handle(_chunk(usage={"prompt_tokens": 12, "completion_tokens": 6}), 10.6)
    state.handle("[DONE]", 10.6)
    out = state.finish()
    assert out.success and out.error == ""
    assert out.ttft == pytest.approx(0.2)
    assert out.itl == pytest.approx([0.1, 0.05, 0.15])
    assert out.latency == pytest.approx(0.5)  # the last token chunk, not the usage or [DONE]
    assert (out.output_tokens, out.prompt_len, out.generated_text) == (6, 12, "Hi")


def test_stream_failures_are_named() -> None:
    cut = _StreamState(chat=True, start=0.0)
    cut.handle(_chunk({"content": "a"}), 0.1)
    assert cut.finish().error == "the stream ended without [DONE]"
    errored = _StreamState(chat=True, start=0.0)
    errored.handle(_chunk({"content": "a"}), 0.1)
    errored.handle(json.dumps({"error": {"message": "upstream died"}}), 0.2)
    errored.handle("[DONE]", 0.2)
    out = errored.finish()
    assert not out.success and "upstream died" in out.error
    empty = _StreamState(chat=True, start=0.0)
    empty.handle(_chunk({"role": "assistant", "content": ""}), 0.1)
    empty.handle("[DONE]", 0.1)
    assert "no token" in empty.finish().error
    no_usage = _StreamState(chat=False, start=0.0)
    for t in (0.1, 0.2, 0.3):
        no_usage.handle(json.dumps({"choices": [{"text": "ab", "finish_reason": None}]}), t)
    no_usage.handle("[DONE]", 0.3)
    out = no_usage.finish()
    assert out.success and out.output_tokens == 3 and out.generated_text == "ababab"


# --------------------------------------------------------------------------- end to end


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kimi_modes", "bench", "serve", "--disable-tqdm", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def saved(folder: Path) -> dict[str, Any]:
    [path] = folder.glob("*.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


VLLM_KEYS = {
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
    "request_rate", "burstiness", "max_concurrency", "duration", "completed", "failed",
    "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput",
    "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
    "max_concurrent_requests", "latencies", "queue_times",
    *(f"{stat}_{m}_ms" for stat in ("mean", "median", "std", "p99")
      for m in ("ttft", "tpot", "itl")),
}


def sim_stats(sim: Any) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(sim.url + "/sim/stats").json()
    return stats


def test_chat_against_the_simulator_saves_vllms_keys(start_simulator: Callable[..., Any],
                                                     tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0.02", "--tpot", "0.002")
    run = bench("--base-url", sim.url, "--num-prompts", "6", "--input-len", "24",
                "--output-len", "8", "--max-concurrency", "3", "--num-warmups", "2",
                "--extra-body", '{"chat_template_kwargs": {"thinking": false}}',
                "--goodput", "ttft:5000", "tpot:1000", "--metadata", "run=ci",
                "--save-result", "--save-detailed", "--result-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "============ Serving Benchmark Result ============" in run.stdout
    assert "Request goodput (req/s):" in run.stdout
    result = saved(tmp_path)
    assert VLLM_KEYS | set(DETAILED_FIELDS) <= set(result)
    assert result["model_id"] == "moonshotai/Kimi-K2.5"  # the first of /v1/models
    assert (result["backend"], result["request_rate"], result["max_concurrency"]) == (
        "openai-chat", "inf", 3)
    assert (result["completed"], result["failed"], result["num_prompts"]) == (6, 0, 6)
    assert result["run"] == "ci"
    assert result["output_lens"] == [8] * 6  # ignore_eos is on for random, as in vLLM
    assert result["total_output_tokens"] == 48
    assert all(n > 24 for n in result["input_lens"])  # the server's prompt_tokens
    assert result["request_goodput"] == pytest.approx(result["request_throughput"])
    assert all(e == "" for e in result["errors"])
    assert 1 <= result["max_concurrent_requests"] <= 3
    stats = sim_stats(sim)
    bodies = [r["body"] for r in stats["last_requests"] if r["path"].endswith("completions")]
    assert len(bodies) == 1 + 2 + 6  # the test request, the warm-ups, the run
    assert all(b["chat_template_kwargs"] == {"thinking": False} and b["ignore_eos"] is True
               and b["max_completion_tokens"] == 8 and b["stream"] is True
               and b["stream_options"] == {"include_usage": True} for b in bodies)


def test_completions_endpoint_with_a_poisson_rate(start_simulator: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0.01", "--tpot", "0.002")
    run = bench("--base-url", sim.url + "/v1", "--endpoint", "/v1/completions",
                "--model", "moonshotai/Kimi-K2.5", "--num-prompts", "8", "--input-len", "16",
                "--output-len", "6", "--random-range-ratio", "0.5", "--request-rate", "40",
                "--burstiness", "2", "--save-result", "--save-detailed",
                "--result-dir", str(tmp_path), "--result-filename", "c.json")
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "c.json").read_text())
    assert (result["backend"], result["request_rate"], result["burstiness"]) == (
        "openai", 40.0, 2.0)
    assert result["completed"] == 8
    assert all(3 <= n <= 9 for n in result["output_lens"])
    assert all(text for text in result["generated_texts"])
    assert result["request_goodput"] is None
    prompts = [r["body"]["prompt"] for r in sim_stats(sim)["last_requests"]]
    assert all(count_tokens(p) in range(8, 25) for p in prompts)


def test_without_save_detailed_the_per_request_lists_are_left_out(
        start_simulator: Callable[..., Any], tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    run = bench("--base-url", sim.url, "--num-prompts", "2", "--input-len", "4",
                "--output-len", "2", "--save-result", "--result-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    result = saved(tmp_path)
    assert not set(DETAILED_FIELDS) & set(result)
    assert set(result) >= VLLM_KEYS


@pytest.fixture
def gateway(start_simulator: Callable[..., Any], start_gateway: Callable[..., Any],
            upstream_toml: Callable[..., str]) -> Any:
    sim = start_simulator("--ttft", "0.01", "--tpot", "0.002")
    gw = start_gateway(upstream_toml(sim.v1))
    gw.sim = sim
    return gw


def test_gateway_instant_mode(gateway: Any, tmp_path: Path) -> None:
    run = bench("--base-url", gateway.url, "--model", "kimi-k2.5-instant", "--num-prompts", "4",
                "--input-len", "12", "--output-len", "6", "--save-result", "--save-detailed",
                "--result-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    result = saved(tmp_path)
    assert (result["model_id"], result["completed"]) == ("kimi-k2.5-instant", 4)
    assert result["output_lens"] == [6] * 4
    assert all(result["generated_texts"])
    upstream = [r["body"] for r in sim_stats(gateway.sim)["last_requests"]]
    assert all(b["chat_template_kwargs"]["thinking"] is False for b in upstream)


def test_gateway_thinking_mode_times_reasoning_as_tokens(gateway: Any, tmp_path: Path) -> None:
    run = bench("--base-url", gateway.url, "--model", "kimi-k2.5-thinking", "--num-prompts",
                "4", "--input-len", "12", "--output-len", "10", "--save-result",
                "--save-detailed", "--result-dir", str(tmp_path),
                "--percentile-metrics", "ttft,tpot,itl,e2el")
    assert run.returncode == 0, run.stderr
    result = saved(tmp_path)
    assert result["completed"] == 4
    assert result["output_lens"] == [10] * 4
    assert "mean_e2el_ms" in result
    for text, itl, ttft in zip(result["generated_texts"], result["itls"], result["ttfts"],
                               strict=True):
        # The answer's content holds fewer tokens than were timed: reasoning chunks count.
        assert count_tokens(text) < len(itl) + 1
        assert ttft > 0
    upstream = [r["body"] for r in sim_stats(gateway.sim)["last_requests"]]
    assert all(b["chat_template_kwargs"]["thinking"] is True for b in upstream)


def test_plots_are_written(start_simulator: Callable[..., Any], tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0.005", "--tpot", "0.001")
    run = bench("--base-url", sim.url, "--num-prompts", "5", "--input-len", "8",
                "--output-len", "12", "--plot", str(tmp_path / "plots"))
    assert run.returncode == 0, run.stderr
    for name in ("latency_histograms.png", "output_tokens_per_second.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_failed_requests_are_counted_with_their_errors(start_simulator: Callable[..., Any],
                                                       tmp_path: Path) -> None:
    script = tmp_path / "rules.json"
    script.write_text(json.dumps({"rules": [{"match": {"user": "broken"}, "fault": "500"}]}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    data = tmp_path / "reqs.jsonl"
    data.write_text('{"prompt": "fine request", "output_len": 4}\n'
                    '{"messages": [{"role": "user", "content": "a broken one"}]}\n')
    run = bench("--base-url", sim.url, "--dataset-name", "jsonl", "--dataset-path", str(data),
                "--num-prompts", "6", "--save-result", "--save-detailed",
                "--result-dir", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    result = saved(tmp_path / "out")
    assert (result["completed"], result["failed"]) == (3, 3)
    assert [bool(e) for e in result["errors"]] == [False, True] * 3
    assert all(e.startswith("HTTP 500") for e in result["errors"][1::2])
    assert "Failed requests during benchmark run detected" in run.stderr


def test_unreachable_endpoint_is_one_line_and_a_failure(unused_port: int) -> None:
    run = bench("--base-url", f"http://127.0.0.1:{unused_port}", "--model", "m",
                "--num-prompts", "2", timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: the first request")
    assert "Traceback" not in run.stderr
    run = bench("--base-url", f"http://127.0.0.1:{unused_port}", "--num-prompts", "2")
    assert run.returncode == 1
    assert f"error: cannot reach http://127.0.0.1:{unused_port}/v1/models: " in run.stderr


def test_refused_first_request_stops_the_run(start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    run = bench("--base-url", sim.url, "--model", "no-such-model", "--num-prompts", "2")
    assert run.returncode == 1
    assert "HTTP 404" in run.stderr and "Traceback" not in run.stderr
    assert "Serving Benchmark Result" not in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--goodput", "itl:5"], "--goodput takes KEY:VALUE"),
        (["--extra-body", "{oops"], "--extra-body is not valid JSON"),
        (["--random-range-ratio", "1.5"], "range-ratio must be in [0, 1)"),
        (["--dataset-name", "jsonl"], "needs --dataset-path"),
        (["--endpoint", "/v1/embeddings"], "--endpoint must be"),
        (["--request-rate", "0"], "--request-rate must be positive"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    run = bench("--base-url", "http://127.0.0.1:9", "--model", "m", "--num-prompts", "1", *args)
    assert run.returncode != 0
    assert message in run.stderr and "Traceback" not in run.stderr


def test_measured_latencies_match_the_simulators(start_simulator: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    """The tool's own accuracy, with generous bounds for a shared machine (the benchmark
    benchmarks/bench_serve_accuracy.py reports the exact error)."""
    sim = start_simulator("--ttft", "0.2", "--tpot", "0.02")
    run = bench("--base-url", sim.url, "--num-prompts", "8", "--input-len", "64",
                "--output-len", "30", "--max-concurrency", "4", "--save-result",
                "--result-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    result = saved(tmp_path)
    assert result["mean_ttft_ms"] == pytest.approx(200, rel=0.15)
    assert result["mean_tpot_ms"] == pytest.approx(20, rel=0.15)
