"""Tests of the chorus-mathematician example plugin: tools, offline parsers, discovery."""

from __future__ import annotations

import asyncio
import math
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import chorus_mathematician as plugin
import pytest
from autogen_core import CancellationToken
from chorus_mathematician import (
    calculate,
    calculate_args,
    convert_args,
    convert_units,
    evaluate,
    format_number,
)

from chorus import AgentSpec, ToolSpec
from chorus.testing import Chorus, ChorusFactory, ModelReply, offline_reply


@pytest.fixture
def loaded(make_chorus: ChorusFactory) -> Chorus:
    """Chorus with this plugin alone, found through its entry point as a deployment finds it."""
    return make_chorus(installed="mathematician")


# -- calculate: correctness ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("12 * (3 + 4)", "12 * (3 + 4) = 84"),
        ("12*(3+4)", "12 * (3 + 4) = 84"),
        ("0.1 + 0.2", "0.1 + 0.2 = 0.3"),
        ("7 / 2", "7 / 2 = 3.5"),
        ("14 / 2", "14 / 2 = 7"),
        ("1 / 3", "1 / 3 = 0.333333333333"),
        ("7 // 2", "7 // 2 = 3"),
        ("-7 % 3", "-7 % 3 = 2"),
        ("2 ** 10", "2 ** 10 = 1024"),
        ("2^10", "2 ** 10 = 1024"),
        ("-3 ** 2", "-3 ** 2 = -9"),
        ("(-3) ** 2", "(-3) ** 2 = 9"),
        ("2 ** -1", "2 ** (-1) = 0.5"),
        ("sqrt(16) + 1", "sqrt(16) + 1 = 5"),
        ("√16", "sqrt(16) = 4"),
        ("3 × 4 ÷ 2", "3 * 4 / 2 = 6"),
        ("2(3 + 4)", "2 * (3 + 4) = 14"),
        ("2pi", "2 * pi = 6.28318530718"),
        ("sin(pi)", "sin(pi) = 0"),
        ("cos(pi)", "cos(pi) = -1"),
        ("log(8, 2)", "log(8, 2) = 3"),
        ("ln(e)", "ln(e) = 1"),
        ("log10(1000)", "log10(1000) = 3"),
        ("exp(0)", "exp(0) = 1"),
        ("abs(-2.5)", "abs(-2.5) = 2.5"),
        ("round(2.567, 2)", "round(2.567, 2) = 2.57"),
        ("floor(2.7) + ceil(2.1)", "floor(2.7) + ceil(2.1) = 5"),
        ("factorial(5)", "factorial(5) = 120"),
        ("10 ** 20", "10 ** 20 = 100000000000000000000"),
        ("1e20 * 10.0", "1e+20 * 10.0 = 1e21"),
    ],
)
def test_calculate(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


def test_evaluate_returns_numbers() -> None:
    assert evaluate("2 + 3 * 4") == 14
    assert evaluate("(2 + 3) * 4") == 20
    assert evaluate("pi") == math.pi
    assert isinstance(evaluate("2 ** 100"), int)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.30000000000000004, "0.3"), (5280.000000000001, "5280"), (-0.0, "0"), (1e-20, "1e-20"), (123, "123"),
     (2.5, "2.5"), (1.5e16, "1.5e16")],
)
def test_format_number(value: float, expected: str) -> None:
    assert format_number(value) == expected


# -- calculate: safety ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "only these functions"),
        ("__import__('os').system('echo hi')", "only these functions"),
        ("(1).real", "attribute access"),
        ("().__class__.__bases__", "attribute access"),
        ("open('/etc/passwd')", "only these functions"),
        ("x + 1", "unknown name 'x'"),
        ("os", "unknown name 'os'"),
        ("2 ** 100000", "exponent"),
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 5000", "too large"),
        ("(10 ** 999) * (10 ** 999)", "too large"),
        ("10.0 ** 400", "too large"),
        ("exp(1000)", "too large"),
        ("factorial(100000)", "factorial"),
        ("round(5, -10 ** 9)", "round()"),
        ("1 / 0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "undefined"),
        ("log(0)", "undefined"),
        ("(-8) ** (1 / 3)", "not a real number"),
        ("1" * 501, "too long"),
        ("", "empty"),
        ("'a' * 3", "not a number"),
        ("True + 1", "not a number"),
        ("1j * 2", "not a number"),
        ("[1, 2]", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("2 < 3", "not allowed"),
        ("2 << 3", "not allowed"),
        ("sqrt(x=4)", "positional"),
        ("sqrt(1, 2)", "arguments"),
        ("1; 2", "could not read"),
        ("import os", "could not read"),
    ],
)
def test_calculate_refuses(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        calculate(expression)


def test_calculate_length_limit() -> None:
    assert calculate(" + ".join(["1"] * 100)).endswith("= 100")  # 397 characters
    with pytest.raises(ValueError, match="too long"):
        calculate(" + ".join(["1"] * 200))  # 797 characters


# -- convert_units ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((5, "km", "miles"), "5 km = 3.10685596119 mi"),
        ((3, "meters", "feet"), "3 m = 9.84251968504 ft"),
        ((1, "mile", "ft"), "1 mi = 5280 ft"),
        ((12, "inches", "cm"), "12 in = 30.48 cm"),
        ((2, "pounds", "kilograms"), "2 lb = 0.90718474 kg"),
        ((2, "lbs", "oz"), "2 lb = 32 oz"),
        ((500, "mg", "g"), "500 mg = 0.5 g"),
        ((1, "gallon", "cups"), "1 gal = 16 cups"),
        ((1, "l", "ml"), "1 l = 1000 ml"),
        ((90, "min", "h"), "90 min = 1.5 h"),
        ((1, "day", "seconds"), "1 day = 86400 s"),
        ((100, "F", "celsius"), "100 °F = 37.7777777778 °C"),
        ((-40, "C", "F"), "-40 °C = -40 °F"),
        ((0, "degrees Celsius", "kelvin"), "0 °C = 273.15 K"),
        ((300, "K", "°F"), "300 K = 80.33 °F"),
        ((3, "Kilometers", "m"), "3 km = 3000 m"),
    ],
)
def test_convert_units(args: tuple[float, str, str], expected: str) -> None:
    assert convert_units(*args) == expected


def test_convert_units_errors_name_what_is_supported() -> None:
    with pytest.raises(ValueError, match=r"unknown unit 'furlong'.*length: mm, cm, m, km"):
        convert_units(1, "furlong", "m")
    with pytest.raises(ValueError, match=r"cannot convert kilograms \(mass\) to metres \(length\).*Supported"):
        convert_units(1, "kg", "m")
    with pytest.raises(ValueError, match="absolute zero"):
        convert_units(-500, "C", "K")
    with pytest.raises(ValueError, match="finite"):
        convert_units(float("inf"), "m", "km")


# -- offline parsers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expression"),
    [
        ("What is 12 * (3 + 4)?", "12 * (3 + 4)"),
        ("calculate 12*(3+4)", "12 * (3 + 4)"),
        ("What's 7 times 6?", "7 * 6"),
        ("compute 100 divided by 8", "100 / 8"),
        ("What is 2 to the power of 10?", "2 ** 10"),
        ("what is 9 squared minus 1", "9 ** 2 - 1"),
        ("Calculate the square root of 144 plus 2 squared", "sqrt(144) + 2 ** 2"),
        ("What is 15% of 80?", "15 / 100 * 80"),
        ("what is two plus two", "2 + 2"),
        ("what is 3 x 4", "3 * 4"),
        ("What is 1,000,000 / 4?", "1000000 / 4"),
        ("what is 10 mod 3", "10 % 3"),
        ("what is 5 minus negative 3", "5 - -3"),
        ("Compute sin(pi/2) + cos(0)", "sin(pi / 2) + cos(0)"),
        ("I have 3, 4 and 5 apples; what is 3 + 4 + 5?", "3 + 4 + 5"),
        ("what is 7 divided by 0", "7 / 0"),
        # Sums said as verbs, halves and averages.
        ("10-3", "10 - 3"),
        ("add 5 and 7", "5 + 7"),
        ("subtract 3 from 10", "10 - 3"),
        ("multiply 6 by 7", "6 * 7"),
        ("divide 20 by 4", "20 / 4"),
        ("half of 250", "250 / 2"),
        ("what is the average of 2, 4 and 9", "(2 + 4 + 9) / 3"),
    ],
)
def test_calculate_args(message: str, expression: str) -> None:
    assert calculate_args(message) == {"expression": expression}


@pytest.mark.parametrize(
    "message",
    ["what is the capital of France", "hello", "What is 2024?", "what is 50%", "convert 5 km to miles",
     "how many feet in 3 meters", "", "what is " + "1 + " * 1000 + "1",
     "what day of the week is 2026-12-25", "meet me at 10:30", "my phone number is 555-1234",
     "it's 5-10 minutes away", "the score was 3-1"],
)
def test_calculate_args_declines(message: str) -> None:
    assert calculate_args(message) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("convert 5 km to miles", (5.0, "km", "mi")),
        ("Convert 5 kilometers into miles", (5.0, "km", "mi")),
        ("how many feet in 3 meters", (3.0, "m", "ft")),
        ("How many ounces are in 2 pounds?", (2.0, "lb", "oz")),
        ("how many seconds in a day", (1.0, "day", "s")),
        ("100 F in celsius", (100.0, "°F", "°C")),
        ("What is 72°F in C?", (72.0, "°F", "°C")),
        ("convert 30 degrees celsius to fahrenheit", (30.0, "°C", "°F")),
        ("-40 c to f", (-40.0, "°C", "°F")),
        ("3 metres is how many feet", (3.0, "m", "ft")),
        ("convert 3 ft to in", (3.0, "ft", "in")),
        ("Convert 1,500 g to kg", (1500.0, "g", "kg")),
        ("convert 2.5 hours to minutes", (2.5, "h", "min")),
        ("5km in mi", (5.0, "km", "mi")),
        ("convert 12 fl oz to ml", (12.0, "fl oz", "ml")),
        ("convert 5 kg to meters", (5.0, "kg", "m")),  # the tool explains why it can't
        ("kg to lbs 5", (5.0, "kg", "lb")),
        ("fahrenheit 212 to celsius", (212.0, "°F", "°C")),
    ],
)
def test_convert_args(message: str, expected: tuple[float, str, str]) -> None:
    value, from_unit, to_unit = expected
    assert convert_args(message) == {"value": value, "from_unit": from_unit, "to_unit": to_unit}


@pytest.mark.parametrize(
    "message",
    ["how many days until 2027-01-01", "What is 12 * (3 + 4)?", "convert stuff", "how many people live in Paris", ""],
)
def test_convert_args_declines(message: str) -> None:
    assert convert_args(message) is None


def test_parsed_arguments_run_through_the_tools() -> None:
    for spec in plugin.TOOLS:
        assert spec.offline_args is not None
        for example in spec.examples:
            args = spec.offline_args(example)
            assert args is not None, example
            assert "=" in spec.func(**args)


# -- the plugin as Chorus sees it -------------------------------------------------------------


def test_hooks_return_specs() -> None:
    tools = plugin.chorus_register_tools()
    agents = plugin.chorus_register_agents()
    assert [t.name for t in tools] == ["calculate", "convert_units"]
    assert all(isinstance(t, ToolSpec) and t.keywords and t.examples for t in tools)
    assert len(agents) == 1 and isinstance(agents[0], AgentSpec)
    assert agents[0].name == "mathematician"
    assert set(agents[0].tools) == {t.name for t in tools}
    assert "sqrt" in tools[0].description and "fahrenheit" in tools[1].description.lower()


def test_discovered_through_its_entry_point(loaded: Chorus) -> None:
    registry = loaded.registry
    report = registry.report_for("mathematician")
    assert report is not None, [r.name for r in registry.reports]
    assert report.status == "ok", report.error
    assert report.distribution == "chorus-mathematician"
    assert report.module == "chorus_mathematician"
    assert report.agents == ["mathematician"]
    assert report.tools == ["calculate", "convert_units"]
    assert registry.agents["mathematician"].plugin == "mathematician"


def _run_tool(spec: ToolSpec, args: dict[str, Any]) -> str:
    """Run ``spec`` as AutoGen would; on a worker thread, so no other test's event loop gets in the way."""
    tool = spec.to_autogen()
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(asyncio.run, tool.run_json(args, CancellationToken())).result()
    return tool.return_value_as_string(result)


def test_autogen_tool_schema_and_errors() -> None:
    assert plugin.CALCULATE.to_autogen().schema["parameters"]["required"] == ["expression"]
    assert _run_tool(plugin.CALCULATE, {"expression": "6 * 7"}) == "6 * 7 = 42"
    with pytest.raises(ValueError, match="division by zero"):
        _run_tool(plugin.CALCULATE, {"expression": "1 / 0"})
    assert _run_tool(plugin.CONVERT_UNITS, {"value": 5, "from_unit": "km", "to_unit": "mi"}) == (
        "5 km = 3.10685596119 mi"
    )


# -- the offline model --------------------------------------------------------------------------


def _ask(loaded: Chorus, messages: str | list[dict[str, Any]]) -> ModelReply:
    return offline_reply(loaded, messages, agent="mathematician")


@pytest.mark.parametrize(
    ("message", "tool", "arguments"),
    [
        ("What is 12 * (3 + 4)?", "calculate", {"expression": "12 * (3 + 4)"}),
        ("Convert 5 km to miles", "convert_units", {"value": 5.0, "from_unit": "km", "to_unit": "mi"}),
        ("How many feet in 3 meters?", "convert_units", {"value": 3.0, "from_unit": "m", "to_unit": "ft"}),
        ("100 F in celsius", "convert_units", {"value": 100.0, "from_unit": "°F", "to_unit": "°C"}),
    ],
)
def test_offline_model_calls_the_right_tool(loaded: Chorus, message: str, tool: str, arguments: dict[str, Any]) -> None:
    reply = _ask(loaded, message)
    assert len(reply.tool_calls) == 1, reply.text
    assert reply.tool_calls[0].name == tool
    assert dict(reply.tool_calls[0].arguments) == arguments


def test_offline_model_answers_without_tools_when_nothing_to_compute(loaded: Chorus) -> None:
    reply = _ask(loaded, "What is the capital of France?")
    assert not reply.tool_calls
    assert "mathematician" in reply.text


def test_offline_model_reports_the_tool_result(loaded: Chorus) -> None:
    call = _ask(loaded, "What is 12 * (3 + 4)?").tool_calls[0]
    result = calculate(**call.arguments)
    reply = _ask(
        loaded,
        [
            {"role": "user", "content": "What is 12 * (3 + 4)?", "name": "user"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.name, "arguments": '{"expression": "12 * (3 + 4)"}'}},
            ]},
            {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result},
        ],
    )
    assert reply.text == "12 * (3 + 4) = 84"
