"""Write the tool-call verifier's bundled sample set:
``src/kimi_modes/bench/data/tool_calls_sample.jsonl``.

Run ``python scripts/make_tool_calls_sample.py`` after editing the cases below; the test suite
checks that the checked-in file is exactly what this script writes.

Every request is hand-written. Each line is a chat-completion body (K2-Vendor-Verifier's format)
plus ``expected_finish_reason``: ``tool_calls`` where any sound deployment of a Kimi model calls
a tool, ``stop`` where it answers in text. The prompts name the tool to use and give the values
of constrained fields (``origin=SFO``), so the expected behaviour is unambiguous for a real model
and is also what the simulated engine does (it calls the tools a message names, see
docs/simulated.md): the sample set then scores 100 % on a healthy simulator, and any loss is the
deployment's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "src/kimi_modes/bench/data/tool_calls_sample.jsonl"


def fn(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function",
            "function": {"name": name, "description": description, "parameters": parameters}}


def obj(properties: dict[str, Any], required: list[str] | None = None,
        **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    return out


STR = {"type": "string"}

WEATHER = fn("get_weather", "Current weather for a city.", obj({
    "city": {"type": "string", "description": "City name, e.g. Paris"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
}, ["city"]))

TIME = fn("get_time", "Current local time in an IANA time zone.", obj({
    "timezone": {"type": "string", "description": "e.g. Asia/Tokyo"},
}, ["timezone"]))

FLIGHTS = fn("search_flights", "Search one-way flights.", obj({
    "origin": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "IATA airport code"},
    "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "date": {"type": "string", "format": "date", "description": "YYYY-MM-DD"},
    "passengers": {"type": "integer", "minimum": 1, "maximum": 9, "default": 1},
    "cabin": {"type": "string", "enum": ["economy", "premium", "business", "first"]},
}, ["origin", "destination", "date"], additionalProperties=False))

EVENT = fn("create_calendar_event", "Create a calendar event.", obj({
    "title": STR,
    "start": {"type": "string", "description": "ISO 8601 date-time"},
    "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 1440},
    "attendees": {"type": "array", "items": obj({
        "email": STR, "optional": {"type": "boolean"}}, ["email"])},
    "location": obj({
        "name": STR,
        "address": obj({"street": STR, "city": STR, "country": STR}, ["city"]),
    }, ["name"]),
    "reminders_minutes": {"type": "array", "items": {"type": "integer", "minimum": 0}},
}, ["title", "start", "duration_minutes"]))

EMAIL = fn("send_email", "Send an email.", obj({
    "to": {"type": "array", "items": STR, "minItems": 1},
    "subject": STR,
    "body": STR,
    "cc": {"type": "array", "items": STR},
    "priority": {"type": "string", "enum": ["low", "normal", "high"]},
}, ["to", "subject", "body"]))

DATABASE = fn("query_database", "Read rows of a table.", obj({
    "table": {"type": "string", "enum": ["customers", "orders", "products"]},
    "filters": {"type": "array", "items": obj({
        "column": STR,
        "op": {"type": "string", "enum": ["=", "<", ">", "like"]},
        "value": {"anyOf": [{"type": "string"}, {"type": "number"}]},
    }, ["column", "op", "value"])},
    "order_by": obj({"column": STR,
                     "direction": {"type": "string", "enum": ["asc", "desc"]}}, ["column"]),
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
}, ["table"]))

CURRENCY = fn("convert_currency", "Convert an amount between currencies.", obj({
    "amount": {"type": "number", "exclusiveMinimum": 0},
    "from_currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "to_currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
}, ["amount", "from_currency", "to_currency"]))

PYTHON = fn("run_python", "Run Python code and return its output.", obj({
    "code": STR,
    "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 60},
}, ["code"]))

THERMOSTAT = fn("set_thermostat", "Set a room's thermostat.", obj({
    "room": STR,
    "target_celsius": {"type": "number", "minimum": 10, "maximum": 30},
    "mode": {"type": "string", "enum": ["heat", "cool", "auto", "off"]},
}, ["room", "target_celsius"]))

TODO = fn("add_todos", "Add items to the to-do list.", obj({
    "items": {"type": "array", "minItems": 1, "items": obj({
        "text": STR,
        "due": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": STR},
    }, ["text"])},
}, ["items"]))

ORDER = fn("lookup_order", "Look up an order.", obj({
    "order_id": {"type": "string", "pattern": "^ORD-[0-9]{6}$"},
    "include": {"type": "array", "items": {"type": "string",
                                           "enum": ["items", "shipping", "payments"]}},
}, ["order_id"]))

TRANSLATE = fn("translate_text", "Translate text.", obj({
    "text": STR,
    "target_language": {"type": "string", "enum": ["en", "fr", "de", "es", "ja", "zh"]},
    "formality": {"type": "string", "enum": ["formal", "informal"]},
}, ["text", "target_language"]))

FILES = fn("list_files", "List the files of a directory.", obj({
    "path": {"type": "string", "default": "."},
    "recursive": {"type": "boolean"},
}))

SEARCH = fn("web_search", "Search the web.", obj({
    "query": STR,
    "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
    "site": STR,
}, ["query"]))

INVOICE = fn("create_invoice", "Create an invoice.", {
    "type": "object",
    "$defs": {"line": obj({
        "description": STR,
        "quantity": {"type": "integer", "minimum": 1},
        "unit_price": {"type": "number", "minimum": 0},
    }, ["description", "quantity", "unit_price"])},
    "properties": {
        "customer": STR,
        "currency": {"type": "string", "const": "EUR"},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 1},
    },
    "required": ["customer", "currency", "lines"],
})

ALL = [WEATHER, TIME, FLIGHTS, EVENT, EMAIL, DATABASE, CURRENCY, PYTHON, THERMOSTAT, TODO,
       ORDER, TRANSLATE, FILES, SEARCH, INVOICE]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def system(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def call(name: str, index: int, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"functions.{name}:{index}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


def assistant_calls(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": list(calls)}


def result(call_: dict[str, Any], content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_["id"], "name": call_["function"]["name"],
            "content": content}


def case(label: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
         **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages}
    if tools is not None:
        body["tools"] = tools
    body.update(fields)
    body["expected_finish_reason"] = label
    return body


def forced(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


ASSISTANT = system("You are a helpful assistant. Use the tools when the user asks for them.")

W0 = call("get_weather", 0, {"city": "Paris"})
T1 = call("get_time", 1, {"timezone": "Asia/Tokyo"})
F0 = call("search_flights", 0, {"origin": "SFO", "destination": "JFK", "date": "2025-12-01"})
O0 = call("lookup_order", 0, {"order_id": "ORD-123456", "include": ["shipping"]})
S0 = call("web_search", 0, {"query": "kimi k2 release date"})


def cases() -> list[dict[str, Any]]:
    tc, stop = "tool_calls", "stop"
    return [
        # --- one call, tool_choice absent (auto) ------------------------------------------
        case(tc, [user("Check the current weather in Paris with get_weather, city=Paris")],
             [WEATHER]),
        case(tc, [ASSISTANT, user("Use get_weather for city=Boston, unit=fahrenheit please")],
             [WEATHER, TIME]),
        case(tc, [user("Find me flights with search_flights: origin=SFO destination=JFK "
                       "date=2025-12-01, 2 passengers, business cabin")],
             [FLIGHTS, WEATHER]),
        case(tc, [user("Put a meeting in my calendar with create_calendar_event: "
                       "title=\"Design review\" start=2025-11-03T10:00:00Z "
                       "duration_minutes=45 at the office in Berlin")],
             [EVENT, EMAIL]),
        case(tc, [user("Use send_email to tell bob@example.com that the report is ready; "
                       "subject=\"Report\" body=\"The Q3 report is ready.\"")],
             [EMAIL, EVENT]),
        case(tc, [user("With query_database, list the 10 most recent orders whose total is "
                       "above 100: table=orders")],
             [DATABASE]),
        case(tc, [user("Convert 250 US dollars to euros using convert_currency: "
                       "amount=250 from_currency=USD to_currency=EUR")],
             [CURRENCY, WEATHER]),
        case(tc, [user("Run this with run_python and tell me the output: "
                       "code=\"print(sum(range(101)))\"")],
             [PYTHON]),
        case(tc, [user("Set the bedroom thermostat to 21 degrees using set_thermostat: "
                       "room=bedroom target_celsius=21 mode=heat")],
             [THERMOSTAT, WEATHER]),
        case(tc, [user("Use add_todos to add two items: buy milk (tag: shopping) and call "
                       "the dentist, due tomorrow.")],
             [TODO]),
        case(tc, [user("Where is my order? Use lookup_order with order_id=ORD-123456 and "
                       "include the shipping details")],
             [ORDER, EMAIL]),
        case(tc, [user("Translate 'Good morning, how are you?' into Japanese with "
                       "translate_text, target_language=ja, formal register")],
             [TRANSLATE]),
        case(tc, [user("Use list_files to show what is in the current directory.")],
             [FILES, PYTHON]),
        case(tc, [user("Bill ACME Corp with create_invoice: customer=\"ACME Corp\", 3 hours "
                       "of consulting at 120 EUR each.")],
             [INVOICE, EMAIL]),
        case(tc, [user("Look this up with web_search: who won the 2022 football World Cup?")],
             ALL),
        # --- parallel calls ---------------------------------------------------------------
        case(tc, [user("I am flying to Tokyo. Use get_weather for city=Tokyo and get_time "
                       "for timezone=Asia/Tokyo")],
             [WEATHER, TIME]),
        case(tc, [ASSISTANT, user("Plan my trip: search_flights with origin=CDG "
                                  "destination=NRT date=2026-03-14, and get_weather for "
                                  "city=Tokyo")],
             [FLIGHTS, WEATHER, TIME]),
        case(tc, [user("Three things at once, please: get_time for timezone=Europe/London, "
                       "get_weather for city=London, and convert_currency for amount=100 "
                       "from_currency=GBP to_currency=USD")],
             [TIME, WEATHER, CURRENCY, FLIGHTS]),
        # --- tool_choice values -----------------------------------------------------------
        case(tc, [user("What's the weather like in Rome? Use get_weather, city=Rome")],
             [WEATHER, TIME], tool_choice="auto"),
        case(tc, [user("Look up order ORD-654321 for me, order_id=ORD-654321")],
             [ORDER], tool_choice="required"),
        case(tc, [user("Use web_search to find the population of Canada: query=\"population "
                       "of Canada\"")],
             [SEARCH, WEATHER], tool_choice="required"),
        case(tc, [user("I need the weather in Oslo: city=Oslo")],
             [WEATHER, TIME], tool_choice=forced("get_weather")),
        case(tc, [user("Translate 'thank you very much' to German: target_language=de")],
             [TRANSLATE, SEARCH], tool_choice=forced("translate_text")),
        case(stop, [user("Use get_weather for city=Madrid")],
             [WEATHER], tool_choice="none"),
        case(stop, [user("Please run search_flights with origin=LHR destination=JFK "
                         "date=2026-01-10")],
             [FLIGHTS], tool_choice="none"),
        # --- K2VV's conventions: _input role, content parts --------------------------------
        case(tc, [{"role": "_input", "content": "You are an operations assistant."},
                  user("List our customers with query_database, table=customers")],
             [DATABASE, EMAIL]),
        case(tc, [{"role": "user", "content": [
                  {"type": "text", "text": "Use get_time for timezone=America/New_York"}]}],
             [TIME]),
        # --- plain answers expected -------------------------------------------------------
        case(stop, [user("Hi! How are you today?")], [WEATHER, TIME]),
        case(stop, [user("What is the capital of France? Answer in one word.")],
             [WEATHER, FLIGHTS]),
        case(stop, [user("Write a two-line poem about autumn leaves.")], ALL),
        case(stop, [ASSISTANT, user("Explain in one sentence what an API is.")],
             [SEARCH, PYTHON]),
        case(stop, [user("How many days does a leap year have?")], [TRANSLATE]),
        case(stop, [user("Good morning! Tell me one fun fact about octopuses.")], None),
        case(stop, [system("Answer from your own knowledge; do not call tools unless the user "
                           "names one."),
                    user("What is 12 times 12?")],
             [PYTHON, SEARCH]),
        case(stop, [user("Which of your tools would tell me the time in Tokyo? Answer with "
                         "its name only; do not call it.")],
             [WEATHER, TIME, CURRENCY]),
        case(stop, [user("Summarize in one sentence: The meeting moved from Monday to "
                         "Wednesday because the venue was double-booked.")],
             ALL),
        # --- multi-turn with tool results -------------------------------------------------
        case(stop, [user("Use get_weather for city=Paris"), assistant_calls(W0),
                    result(W0, '{"city": "Paris", "temperature_c": 18, "sky": "cloudy"}')],
             [WEATHER]),
        case(stop, [user("Use get_weather for city=Paris and get_time for "
                         "timezone=Asia/Tokyo"),
                    assistant_calls(W0, T1),
                    result(W0, '{"temperature_c": 18, "sky": "cloudy"}'),
                    result(T1, '{"time": "21:04", "utc_offset": "+09:00"}')],
             [WEATHER, TIME]),
        case(stop, [user("Find flights with search_flights: origin=SFO destination=JFK "
                         "date=2025-12-01"),
                    assistant_calls(F0),
                    result(F0, '{"flights": [{"flight": "UA 100", "depart": "07:00", '
                               '"price_usd": 320}, {"flight": "DL 200", "depart": "13:30", '
                               '"price_usd": 280}]}')],
             [FLIGHTS, WEATHER]),
        case(stop, [user("Check order ORD-123456 with lookup_order."), assistant_calls(O0),
                    result(O0, '{"status": "shipped", "carrier": "DHL", '
                               '"eta": "2025-11-05"}'),
                    {"role": "assistant", "content": "Your order has shipped with DHL and "
                                                     "should arrive on 5 November."},
                    user("Great, thanks a lot!")],
             [ORDER, EMAIL]),
        case(stop, [user("Use get_weather for city=Paris"), assistant_calls(W0),
                    result(W0, '{"temperature_c": 18, "sky": "cloudy"}'),
                    {"role": "assistant", "content": "It is 18 °C and cloudy in Paris."},
                    user("Is that warmer than 15 degrees? Answer yes or no.")],
             [WEATHER]),
        case(tc, [user("Use get_weather for city=Paris"), assistant_calls(W0),
                  result(W0, '{"temperature_c": 18, "sky": "cloudy"}'),
                  {"role": "assistant", "content": "It is 18 °C and cloudy in Paris."},
                  user("And now use get_time for timezone=Europe/Paris")],
             [WEATHER, TIME]),
        case(tc, [ASSISTANT, user("Use web_search for query=\"kimi k2 release date\""),
                  assistant_calls(S0),
                  result(S0, '{"results": [{"title": "Kimi K2 released", '
                             '"date": "2025-07-11"}]}'),
                  {"role": "assistant", "content": "Kimi K2 was released on 11 July 2025."},
                  user("Email that to ann@example.com with send_email, subject=\"Kimi K2\"")],
             [SEARCH, EMAIL]),
        case(stop, [user("Use run_python with code=\"print(2**10)\""),
                    assistant_calls(call("run_python", 0, {"code": "print(2**10)"})),
                    result(call("run_python", 0, {"code": "print(2**10)"}), "1024")],
             [PYTHON], tool_choice="auto"),
    ]


def main() -> None:
    lines = [json.dumps(c, ensure_ascii=False) for c in cases()]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = [c["expected_finish_reason"] for c in cases()]
    print(f"wrote {len(lines)} requests to {OUT} "
          f"({labels.count('tool_calls')} tool_calls, {labels.count('stop')} stop)")


if __name__ == "__main__":
    main()
