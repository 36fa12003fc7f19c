"""Parsers from a user's message to tool arguments, for Chorus's offline model.

The offline model calls a tool only when its parser returns arguments, so
these parsers say None whenever they are unsure rather than guess.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from chorus_mathematician._calculator import (
    CONSTANTS,
    FUNCTIONS,
    parse,
    replace_symbols,
)
from chorus_mathematician._units import Unit, find_unit

MAX_MESSAGE_CHARS = 2_000

_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)

# Order matters: longer phrases before the words inside them.
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\bwhat['’]s\b", "what is"),
    (r"(\d)\s*(?:%|percent)\s+of\b", r"\1 / 100 * "),
    (r"\bsquare root(?: of)?\b", " sqrt "),
    (r"\bcube root(?: of)?\b", " cbrt "),
    (r"\bnatural (?:log|logarithm)(?: of)?\b", " ln "),
    (r"\blogarithm\b", " log "),
    (r"\bsine\b", " sin "),
    (r"\bcosine\b", " cos "),
    (r"\btangent\b", " tan "),
    (r"\babsolute value(?: of)?\b", " abs "),
    (r"\b(" + "|".join(FUNCTIONS) + r")\s+of\b", r" \1 "),
    (r"\b(?:raised )?to the (\d+)(?:st|nd|rd|th) power\b", r" ** \1 "),
    (r"\b(?:raised )?to the power(?: of)?\b|\braised to\b", " ** "),
    (r"\bsquared\b", " ** 2 "),
    (r"\bcubed\b", " ** 3 "),
    (r"\bmultiplied by\b|\btimes\b", " * "),
    (r"\bdivided by\b|\bover\b", " / "),
    (r"\bplus\b|\badded to\b", " + "),
    (r"\bminus\b", " - "),
    (r"\bmod(?:ulo)?\b", " % "),
    (r"\bnegative\b", " -"),
    (r"(?<=[\d)])\s*x\s*(?=[\d(])", " * "),
    (r"(?<=\d),(?=\d{3}(?!\d))", ""),
)
_COMPILED = tuple((re.compile(pattern), replacement) for pattern, replacement in _PHRASES)

# Sums said as verbs or as "half of": "add 5 and 7", "subtract 3 from 10", "the average of 2, 4 and 9".
_N = r"(-?(?:\d+(?:\.\d+)?|\.\d+))"
_VERBS: tuple[tuple[str, str], ...] = (
    (rf"\b(?:add(?: up)?|sum(?: up)?|total)\s+{_N}\s*(?:and|to|with|plus|\+)\s*{_N}", r"(\1 + \2)"),
    (rf"\bthe sum of\s+{_N}\s*(?:and|\+)\s*{_N}", r"(\1 + \2)"),
    (rf"\b(?:subtract|take(?: away)?|deduct|remove)\s+{_N}\s+from\s+{_N}", r"(\2 - \1)"),
    (rf"\bthe difference (?:between|of)\s+{_N}\s*(?:and|-)\s*{_N}", r"(\1 - \2)"),
    (rf"\bmultiply\s+{_N}\s*(?:by|and|times|with|x|\*)\s*{_N}", r"(\1 * \2)"),
    (rf"\bthe product of\s+{_N}\s*(?:and|\*)\s*{_N}", r"(\1 * \2)"),
    (rf"\bdivide\s+{_N}\s*(?:by|into|over|/)\s*{_N}", r"(\1 / \2)"),
    (rf"\bthe (?:ratio|quotient) of\s+{_N}\s*(?:and|to|by|/)\s*{_N}", r"(\1 / \2)"),
    (rf"\bhalf (?:of\s+)?{_N}", r"(\1 / 2)"),
    (rf"\b(?:a )?third of\s+{_N}", r"(\1 / 3)"),
    (rf"\b(?:a )?quarter of\s+{_N}", r"(\1 / 4)"),
    (rf"\b(?:double|twice)\s+{_N}", r"(2 * \1)"),
    (rf"\b(?:triple|thrice)\s+{_N}", r"(3 * \1)"),
)
_COMPILED_VERBS = tuple((re.compile(pattern), replacement) for pattern, replacement in _VERBS)
_AVERAGE = re.compile(
    r"\b(?:the )?(?:average|mean) of\s+(-?\d+(?:\.\d+)?(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+)-?\d+(?:\.\d+)?)+)")


def _average(match: re.Match[str]) -> str:
    numbers = re.findall(r"-?\d+(?:\.\d+)?", match.group(1))
    if len(numbers) < 2:
        return match.group(0)
    return f"(({' + '.join(numbers)}) / {len(numbers)}) "
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b")

_MATH_TOKEN = re.compile(r"\s+|\d+(?:\.\d+)?(?:e[-+]?\d+)?|\.\d+|[a-z_][a-z0-9_]*|\*\*|//|[-+*/%(),]|.")
_MATH_NAMES = frozenset(FUNCTIONS) | frozenset(CONSTANTS)
_TRIM_END = " +-*/%,("
_TRIM_START = " */%,)"


# Dates and times are not sums: "2026-12-25" is Christmas, not 1989.
_NOT_MATH = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b\d{1,2}:\d{2}\b")


def _as_math(text: str) -> str:
    text = _NOT_MATH.sub(" date ", text)
    text = replace_symbols(text.lower())
    text = _NUMBER_WORD.sub(lambda m: str(_NUMBER_WORDS.index(m.group(1))), text)
    text = _AVERAGE.sub(_average, text)
    for pattern, replacement in _COMPILED_VERBS:
        text = pattern.sub(replacement, text)
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text


def _runs(text: str) -> list[str]:
    """Maximal stretches of ``text`` made only of numbers, operators and known maths names."""
    runs: list[str] = []
    current: list[str] = []
    depth = 0
    for token in _MATH_TOKEN.findall(text):
        is_name = token[0].isalpha() or token[0] == "_"
        if (is_name and token not in _MATH_NAMES) or (not is_name and not _is_math_symbol(token)):
            runs.append("".join(current))
            current, depth = [], 0
            continue
        depth += token.count("(") - token.count(")")
        if token == "," and depth <= 0:
            # A comma outside parentheses separates items in a sentence, not function arguments.
            runs.append("".join(current))
            current, depth = [], 0
            continue
        current.append(token)
    runs.append("".join(current))
    return [_trimmed(run) for run in runs]


def _trimmed(run: str) -> str:
    """``run`` without dangling operators or unmatched parentheses at its ends."""
    run = run.lstrip(_TRIM_START).rstrip(_TRIM_END).strip()
    while run.endswith(")") and run.count(")") > run.count("("):
        run = run[:-1].rstrip(_TRIM_END).strip()
    while run.startswith("(") and run.count("(") > run.count(")"):
        run = run[1:].lstrip(_TRIM_START).strip()
    return run


def _is_math_symbol(token: str) -> bool:
    if token.isspace() or token[0].isdigit() or token in ("**", "//"):
        return True
    return (token.startswith(".") and len(token) > 1) or token in ("-", "+", "*", "/", "%", "(", ")", ",")


def _is_calculation(tree: ast.Expression) -> bool:
    return any(isinstance(node, (ast.BinOp, ast.Call)) for node in ast.walk(tree))


_ASKS = re.compile(r"\b(?:what|whats|what's|how much|calculate|calc|compute|evaluate|solve|work out|equals?|"
                   r"minus)\b|[=?]", re.I)
_HYPHENATED = re.compile(r"(\d)-(?=\d)")
_ONLY_SUM = re.compile(r"^[\d\s.,+\-*/×÷^()%x]+$")


def calculate_args(message: str) -> Mapping[str, Any] | None:
    """``{"expression": ...}`` for the arithmetic in ``message``, or None when there is none.

    "What is 12 * (3 + 4)?" gives ``{"expression": "12 * (3 + 4)"}``; words such
    as "times", "divided by", "squared" and "square root of" become operators.
    """
    if not message or len(message) > MAX_MESSAGE_CHARS:
        return None
    if not _ASKS.search(message) and not _ONLY_SUM.match(message):
        # Unasked, "555-1234", "5-10 minutes" and "3-1" are a phone number, a range and a score.
        message = _HYPHENATED.sub(r"\1 to ", message)
    best: str | None = None
    for run in _runs(_as_math(message)):
        if not run or (not any(ch.isdigit() for ch in run) and not any(n in run for n in CONSTANTS)):
            continue
        try:
            tree = parse(run)
        except ValueError:
            continue
        if _is_calculation(tree):
            expression = ast.unparse(tree)
            if best is None or len(expression) >= len(best):
                best = expression
    return {"expression": best} if best is not None else None


# -- unit conversion ------------------------------------------------------------------------

_CONVERT_TOKEN = re.compile(r"[-+]?\d+(?:,\d{3})*(?:\.\d+)?|[-+]?\.\d+|°?[a-zµ][a-z0-9³^'’]*|°")
_CONNECTORS = frozenset({"to", "into", "in", "as", "is", "are", "equals", "equal", "make", "makes", "how", "many",
                         "much", "the", "=", "per"})
_HOW_MANY_FILLERS = frozenset({"are", "is", "in", "there", "make", "makes", "does", "do", "fit", "into", "to",
                               "equal", "equals", "per", "of", "the", "go"})
_ONE = frozenset({"a", "an", "one", "per"})


def _tokens(message: str) -> list[str]:
    return _CONVERT_TOKEN.findall(message.lower().replace("’", "'"))


def _is_number(token: str) -> bool:
    return any(ch.isdigit() for ch in token) and token.lstrip("+-")[0] in "0123456789."


def _unit_at(tokens: list[str], i: int) -> tuple[Unit, int] | None:
    """The longest unit name (up to three words) starting at ``tokens[i]``, and the index after it."""
    for n in (3, 2, 1):
        words = tokens[i : i + n]
        if len(words) < n or any(_is_number(w) for w in words):
            continue
        unit = find_unit(" ".join(words))
        if unit is not None:
            return unit, i + n
    return None


def _number(token: str) -> float:
    return float(token.replace(",", ""))


def _how_many(tokens: list[str]) -> tuple[float, Unit, Unit] | None:
    # "how many feet are in 3 metres", "how many cups in a gallon"
    for h in range(len(tokens) - 1):
        if tokens[h] != "how" or tokens[h + 1] not in ("many", "much"):
            continue
        found = _unit_at(tokens, h + 2)
        if found is None:
            continue
        target, k = found
        while k < len(tokens) and tokens[k] in _HOW_MANY_FILLERS and tokens[k] not in _ONE:
            k += 1
        if k >= len(tokens):
            continue
        if _is_number(tokens[k]):
            value = _number(tokens[k])
        elif tokens[k] in _ONE:
            value = 1.0
        else:
            continue
        source = _unit_at(tokens, k + 1)
        if source is not None:
            return value, source[0], target
    return None


def _number_first(tokens: list[str]) -> tuple[float, Unit, Unit] | None:
    # "convert 5 km to miles", "100 F in celsius", "3 metres is how many feet"
    for i, token in enumerate(tokens):
        if not _is_number(token):
            continue
        found = _unit_at(tokens, i + 1)
        if found is None:
            continue
        source, k = found
        connected = False
        while k < len(tokens):
            target = _unit_at(tokens, k) if connected else None
            if target is not None:
                return _number(token), source, target[0]
            if tokens[k] not in _CONNECTORS:
                break
            connected = True
            k += 1
    return None


def _units_first(tokens: list[str]) -> tuple[float, Unit, Unit] | None:
    # "kg to lbs 5", "fahrenheit 212 to celsius": two units joined by "to"/"in", one number anywhere
    numbers = [t for t in tokens if _is_number(t)]
    if len(numbers) != 1:
        return None
    rest = [t for t in tokens if not _is_number(t)]
    for i in range(len(rest)):
        found = _unit_at(rest, i)
        if found is None:
            continue
        source, k = found
        if k < len(rest) and rest[k] in ("to", "in", "into", "as"):
            target = _unit_at(rest, k + 1)
            if target is not None:
                return _number(numbers[0]), source, target[0]
    return None


def convert_args(message: str) -> Mapping[str, Any] | None:
    """``{"value", "from_unit", "to_unit"}`` for a conversion ``message`` asks for, or None.

    Understands "convert 5 km to miles", "how many feet in 3 meters",
    "100 F in celsius" and "3 metres is how many feet".
    """
    if not message or len(message) > MAX_MESSAGE_CHARS:
        return None
    tokens = _tokens(message)
    found = _how_many(tokens) or _number_first(tokens) or _units_first(tokens)
    if found is None:
        return None
    value, source, target = found
    return {"value": value, "from_unit": source.symbol, "to_unit": target.symbol}
