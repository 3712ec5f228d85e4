"""A simulated-engine script (docs/simulated.md) that makes the sample agent tasks
(``bench/data/agent_tasks.jsonl``) answerable, in Agent and in Swarm mode.

The simulated engine is no model: its rules say which tools to call. The answers still come
from the tools: every rule reads its numbers from the task text (regex groups) and hands the
work to the real ``python`` and file tools of the gateway; the last step repeats what the
tools printed. So a task passes only when the tools really ran in the run's workspace — a
broken sandbox, a lost file or a tool error shows as a failed task.

- The swarm's **orchestrator** (the request declares ``spawn_subagents``) fans the two
  multi-part tasks out part by part, and any other task out whole to one sub-agent; after the
  fan-out it answers with the sub-agents' answers.
- An **agent**, and a sub-agent given a whole task, work through the task's steps; a
  sub-agent given one part does that part.

Latencies are the engine's (``--ttft``/``--tpot``): no rule sets its own, so a benchmark can
subtract them. Use::

    kimi-modes simulate --script <(python -c "import json; from kimi_modes.bench.agents.sim
    import sample_sim_script as s; print(json.dumps(s()))")
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

ORCHESTRATOR = {"tool": "spawn_subagents"}

# Factorize n and print the verdict (n is set before).
_FACTORIZE = """m = n
factors = []
d = 2
while d * d <= m:
    while m % d == 0:
        factors.append(d)
        m //= d
    d += 1
if m > 1:
    factors.append(m)
print(f"{n} is prime" if factors == [n] else f"{n} = " + " × ".join(map(str, factors)))"""

_SEQUENCES = r"""import itertools

def fibonacci():
    a, b = 1, 1
    while True:
        yield a
        a, b = b, a + b

sequences = {{"Fibonacci number": fibonacci(),
             "power of 3": (3 ** k for k in itertools.count()),
             "triangular number": (k * (k + 1) // 2 for k in itertools.count(1))}}
for name in {names}:
    first = next(x for x in sequences[name] if x > 1000)
    print(f"The first {{name}} greater than 1000 is {{first}}.")"""

_CSV_WRITE = (
    'rows = "${rows}".split(" / ")\n'
    'with open("${f}", "w") as fh:\n'
    '    fh.write("${h}\\n" + "\\n".join(rows) + "\\n")\n'
    'print(f"wrote {len(rows)} rows to ${f}")')

_CSV_TOTALS = (
    'import csv\n'
    'key, value = "${h}".split(",")\n'
    'totals = {}\n'
    'with open("${f}") as fh:\n'
    '    for row in csv.DictReader(fh):\n'
    '        totals[row[key]] = totals.get(row[key], 0) + int(row[value])\n'
    'for region, total in totals.items():\n'
    '    print(f"{region}: {total}")\n'
    'best = max(totals, key=totals.get)\n'
    'print(f"The highest total is {best} ({totals[best]}).")')

# What python printed, without the trailing whitespace.
_OUT = r"(?s)^(?P<out>.*?)\s*$"


def _python(code: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "python", "arguments": {"code": code}}]}


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def _steps(name: str, user: str, replies: list[dict[str, Any]],
           answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules for a task done in ``len(replies)`` tool steps then ``answer`` (the final
    answer's ``match`` extra, e.g. a ``tool_result`` pattern, goes in ``answer["match"]``)."""
    rules = [{"name": f"{name} step {i}", "match": {"user": user, "step": i},
              "reply": reply} for i, reply in enumerate(replies)]
    rules.append({"name": f"{name} answer",
                  "match": {"user": user, "step": len(replies), "after_tool": True,
                            **answer.get("match", {})},
                  "reply": answer["reply"]})
    return rules


def sample_sim_script() -> dict[str, Any]:
    """The script (``{"rules": [...]}``) for the sample tasks."""
    five = r"(?i)these five integers: (\d+), (\d+), (\d+), (\d+) and (\d+)"
    sequences = r"(?i)three integer sequences"
    orchestrator = [
        {"name": "orchestrator: one sub-agent's answer",
         "match": {**ORCHESTRATOR, "after_tool": True,
                   "tool_result": r"(?s)^1 sub-agent finished:.*?tool calls\n(?P<answer>.*)$"},
         "reply": {"reasoning": "The sub-agent has answered.", "content": "${answer}"}},
        {"name": "orchestrator: synthesis",
         "match": {**ORCHESTRATOR, "after_tool": True,
                   "tool_result": r"(?s)^\d+ sub-agents finished:[^\n]*\n(?P<answers>.*)$"},
         "reply": {"reasoning": "Every part is back; putting them together.",
                   "content": "Results of the sub-agents:\n${answers}"}},
        {"name": "orchestrator: one sub-agent per number",
         "match": {**ORCHESTRATOR, "after_tool": False, "user": five},
         "reply": {"reasoning": "Five independent numbers: one sub-agent each.",
                   "tool_calls": [{"name": "spawn_subagents", "arguments": {
                       "template": "Decide with Python whether {item} is prime and, if it "
                                   "is not, give its prime factorization.",
                       "tasks": ["$1", "$2", "$3", "$4", "$5"]}}]}},
        {"name": "orchestrator: one sub-agent per sequence",
         "match": {**ORCHESTRATOR, "after_tool": False, "user": sequences},
         "reply": {"reasoning": "Three independent sequences: one sub-agent each.",
                   "tool_calls": [{"name": "spawn_subagents", "arguments": {
                       "template": "Find with Python the first {item} greater than 1000.",
                       "tasks": ["Fibonacci number", "power of 3", "triangular number"]}}]}},
        {"name": "orchestrator: the whole task to one sub-agent",
         "match": {**ORCHESTRATOR, "after_tool": False},
         "reply": {"reasoning": "One agent is enough for this.",
                   "tool_calls": [{"name": "spawn_subagents",
                                   "arguments": {"tasks": ["$user"]}}]}},
    ]
    out_answer = {"match": {"tool_result": _OUT}, "reply": {"content": "${out}"}}
    workers = [
        # Sub-agents given one part of a fanned-out task.
        *_steps("factorize one", r"(?i)whether (?P<n>\d+) is prime",
                [_python("n = ${n}\n" + _FACTORIZE)], out_answer),
        *_steps("one sequence", r"(?i)the first (?P<what>[\w ]+?) greater than 1000\.$",
                [_python(_SEQUENCES.format(names='["${what}"]'))], out_answer),
        # Whole tasks (an agent, or a sub-agent given the whole task).
        *_steps("factorize five", five,
                [_python("for n in [$1, $2, $3, $4, $5]:\n"
                         + textwrap.indent(_FACTORIZE, "    "))], out_answer),
        *_steps("sequences", sequences,
                [_python(_SEQUENCES.format(names="sequences"))], out_answer),
        *_steps("primes", r"(?i)sum of all prime numbers below (?P<limit>[\d,]+)",
                [_python('limit = int("${limit}".replace(",", ""))\n'
                         'sieve = bytearray([1]) * limit\n'
                         'sieve[:2] = b"\\0\\0"\n'
                         'for i in range(2, int(limit ** 0.5) + 1):\n'
                         '    if sieve[i]:\n'
                         '        sieve[i * i::i] = bytearray(len(sieve[i * i::i]))\n'
                         'print(sum(i for i, p in enumerate(sieve) if p))')],
                {"match": {"tool_result": r"(?P<v>\d+)"},
                 "reply": {"content": "The sum of all primes below ${limit} is ${v}."}}),
        *_steps("fibonacci", r"(?i)compute F\((?P<n>\d+)\) modulo (?P<m>[\d,]+)",
                [_python('n, mod = ${n}, int("${m}".replace(",", ""))\n'
                         'a, b = 0, 1\n'
                         'for _ in range(n):\n'
                         '    a, b = b, (a + b) % mod\n'
                         'print(a)')],
                {"match": {"tool_result": r"(?P<v>\d+)"},
                 "reply": {"content": "F(${n}) modulo ${m} is ${v}."}}),
        *_steps("weekday", r"(?i)day of the week did (?P<date>\d+ \w+ \d{4})",
                [_python('import datetime\n'
                         'print(datetime.datetime.strptime("${date}", "%d %B %Y")'
                         '.strftime("%A"))')],
                {"match": {"tool_result": r"(?P<day>\w+)"},
                 "reply": {"content": "${date} was a ${day}."}}),
        *_steps("sha256", r"(?is)SHA-256 hex digest of the .*?string (?P<s>\w+) .*?"
                          r"first (?P<k>\d+) hex characters",
                [_python('import hashlib\n'
                         'print(hashlib.sha256(b"${s}").hexdigest()[:${k}])')],
                {"match": {"tool_result": r"(?P<h>[0-9a-f]+)"},
                 "reply": {"content": "${h}"}}),
        *_steps("csv", r"(?i)write a file (?P<f>[\w.]+) with a header line (?P<h>[\w,]+) "
                       r"and these rows: (?P<rows>[^.]*?)\. Then",
                [_python(_CSV_WRITE), _call("read_file", path="${f}"),
                 _python(_CSV_TOTALS)],
                {"match": {"tool_result": _OUT},
                 "reply": {"content": "Totals per region in ${f}:\n${out}"}}),
        *_steps("notes", r"(?i)create the file (?P<p>[\w/.]+) in your workspace containing "
                         r"three lines: (?P<a>\w+), (?P<b>\w+), (?P<c>\w+)",
                [_call("write_file", path="${p}", content="${a}\n${b}\n${c}\n"),
                 _call("list_files", recursive=True), _call("read_file", path="${p}")],
                {"match": {"tool_result": r"(?P<n>\d+)\t(?P<last>[^\n]*)\s*$"},
                 "reply": {"content": '${p} has ${n} lines; the last one is "${last}".'}}),
    ]
    return {"rules": orchestrator + workers}


def write_sample_sim_script(path: Path) -> Path:
    """Write :func:`sample_sim_script` as JSON to ``path``; returns ``path``."""
    path.write_text(json.dumps(sample_sim_script(), indent=1), encoding="utf-8")
    return path
