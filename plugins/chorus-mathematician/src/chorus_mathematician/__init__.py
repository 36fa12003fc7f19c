"""chorus-mathematician: an example Chorus plugin.

It offers one agent, ``mathematician``, and two exact tools it calls instead
of doing sums in its head: :func:`calculate` (a safe arithmetic evaluator)
and :func:`convert_units`. Chorus finds this module through the entry point
``mathematician = "chorus_mathematician"`` in the ``chorus`` group and calls
the two ``@hookimpl`` functions below. Everything here uses only Chorus's
public API: ``from chorus import AgentSpec, ToolSpec, hookimpl``.
"""

from __future__ import annotations

import inspect

from chorus import AgentSpec, ToolSpec, hookimpl
from chorus_mathematician._calculator import calculate, evaluate, format_number
from chorus_mathematician._offline import calculate_args, convert_args
from chorus_mathematician._units import convert_units, find_unit, supported_units

__version__ = "0.1.0"

__all__ = [
    "AGENT",
    "TOOLS",
    "calculate",
    "calculate_args",
    "chorus_register_agents",
    "chorus_register_tools",
    "convert_args",
    "convert_units",
    "evaluate",
    "find_unit",
    "format_number",
    "supported_units",
]

def _full_doc(func: object) -> str:
    """A function's whole docstring on one line: real models see every supported function and unit."""
    return " ".join((inspect.getdoc(func) or "").split())


CALCULATE = ToolSpec(
    func=calculate,
    description=_full_doc(calculate),
    keywords=(
        "calculate", "compute", "evaluate", "solve", "what is", "what's", "how much is", "plus", "minus",
        "times", "multiplied by", "divided by", "square root", "cube root", "squared", "cubed", "to the power",
        "percent of", "sqrt", "arithmetic", "math", "add", "subtract", "multiply", "divide", "half of",
        "double", "average of", "sum of",
    ),
    offline_args=calculate_args,
    examples=("What is 12 * (3 + 4)?", "Calculate the square root of 144 plus 2 squared", "What is 15% of 80?",
              "Add 5 and 7", "Subtract 3 from 10", "What is half of 250?"),
)

CONVERT_UNITS = ToolSpec(
    func=convert_units,
    description=_full_doc(convert_units),
    keywords=(
        "convert", "conversion", "how many", "km", "kilometers", "kilometres", "mile", "miles", "meters",
        "metres", "feet", "inches", "kg", "kilograms", "pounds", "lbs", "ounces", "grams", "celsius",
        "fahrenheit", "kelvin", "liters", "litres", "gallons", "cups", "minutes", "hours", "seconds",
    ),
    offline_args=convert_args,
    examples=("Convert 5 km to miles", "How many feet in 3 meters?", "What is 100 F in celsius?"),
)

TOOLS: tuple[ToolSpec, ...] = (CALCULATE, CONVERT_UNITS)
"""The tools this plugin registers."""

AGENT = AgentSpec(
    name="mathematician",
    description=(
        "Does arithmetic and converts units with exact tools: calculations, percentages, powers, roots, "
        "logarithms and trigonometry, and conversions of length, mass, volume, durations and temperature."
    ),
    system_message=(
        "You are the mathematician of the team. Never do arithmetic in your head: call the `calculate` tool "
        "with a plain expression (numbers, + - * / // % **, parentheses, sqrt, sin, cos, tan, log, ln, exp, "
        "abs, round, floor, ceil, pi, e) for every computation, and the `convert_units` tool for every unit "
        "conversion. If a tool reports an error, explain it to the user in one sentence and, when you can, "
        "retry with a corrected input. Answer with the result first, then a short explanation of the steps."
    ),
    tools=("calculate", "convert_units"),
    # Words that mean maths whatever follows; operator words ("times", "plus") only count when the
    # calculator finds a sum in the message (they are its tool's keywords): "how many times can I ..."
    # is not arithmetic.
    keywords=(
        "math", "maths", "arithmetic", "calculate", "calculation", "compute", "convert", "conversion", "units",
        "percent", "square root",
    ),
    examples=("What is 12 * (3 + 4)?", "Convert 5 km to miles"),
)


@hookimpl
def chorus_register_tools() -> list[ToolSpec]:
    """The calculator and the unit converter."""
    return list(TOOLS)


@hookimpl
def chorus_register_agents() -> list[AgentSpec]:
    """The ``mathematician`` agent, which uses both tools."""
    return [AGENT]
