"""A safe arithmetic evaluator: walks Python's AST, never calls ``eval``.

Only numbers, the operators ``+ - * / // % **``, unary signs, parentheses,
the functions in :data:`FUNCTIONS` and the constants in :data:`CONSTANTS`
are allowed. Every way an expression could run away with the process
(huge powers, huge integers, deep nesting, long input) is refused with a
``ValueError`` whose message a model or a person can act on.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Annotated, Any, cast

Number = int | float

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 10_000
# About 1,000 decimal digits: exact integers stay exact up to this size.
MAX_INT_BITS = 3_400
MAX_FACTORIAL = 1_000
MAX_ROUND_DIGITS = 100
SIGNIFICANT_DIGITS = 12


class CalculationError(ValueError):
    """An expression that is not plain arithmetic, or whose value cannot be given."""


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not _is_integral(ndigits) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise CalculationError(f"round() takes a whole number of digits from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}")
    return round(x, int(ndigits))


def _factorial(n: Number) -> int:
    if not _is_integral(n) or n < 0:
        raise CalculationError("factorial() is defined only for whole numbers >= 0")
    if n > MAX_FACTORIAL:
        raise CalculationError(f"factorial() is limited to n <= {MAX_FACTORIAL}")
    return math.factorial(int(n))


def _trig(func: Callable[[float], float]) -> Callable[[Number], float]:
    # sin(pi) is 1.2e-16 in floating point; people expect 0. Tiny arguments keep their tiny results.
    def wrapped(x: Number) -> float:
        value = func(x)
        if abs(x) > 1e-9 and abs(value) < 1e-15 * max(1.0, abs(x)):
            return 0.0
        return value

    wrapped.__name__ = func.__name__
    return wrapped


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "cbrt": math.cbrt,
    "sin": _trig(math.sin),
    "cos": _trig(math.cos),
    "tan": _trig(math.tan),
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "degrees": math.degrees,
    "radians": math.radians,
    "log": _log,
    "ln": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "abs": abs,
    "round": _round,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
}
"""Functions an expression may call (trigonometry works in radians)."""

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
"""Names an expression may use as values."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}

_SYMBOLS = {"×": "*", "·": "*", "÷": "/", "−": "-", "–": "-", "π": "pi", "²": "**2", "³": "**3", "√": "sqrt "}
_FUNCTION_WITHOUT_PARENS = re.compile(
    r"\b(" + "|".join(sorted(FUNCTIONS, key=len, reverse=True)) + r")\s+(\d+(?:\.\d+)?|\.\d+|pi|tau|e)\b"
)
# "2(3+4)", "(1+2)(3+4)", "2pi", "3 sqrt(2)": a number or ")" right before "(" or a name means times.
_IMPLICIT_TIMES = re.compile(r"((?<![\w.])\d+(?:\.\d+)?|\))\s*(?=\(|(?:pi|tau|sqrt|cbrt)\b)")


def _is_integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def replace_symbols(text: str) -> str:
    """Spell typographic maths (``×``, ``÷``, ``−``, ``π``, ``²``, ``√``, ``^``) the way Python does."""
    for symbol, replacement in _SYMBOLS.items():
        text = text.replace(symbol, replacement)
    return text.replace("^", "**")


def normalise(expression: str) -> str:
    """Rewrite the common non-Python spellings of maths: ``^``, ``×``, ``÷``, ``√9``, ``2(3+4)``, ``2pi``."""
    text = replace_symbols(expression.strip())
    text = _FUNCTION_WITHOUT_PARENS.sub(r"\1(\2)", text)
    return _IMPLICIT_TIMES.sub(r"\1*", text)


def parse(expression: str) -> ast.Expression:
    """Parse and check ``expression``; raises ValueError if it is not plain arithmetic."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculationError("the expression is empty: give arithmetic such as '12 * (3 + 4)'")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(
            f"the expression is too long ({len(expression)} characters; the limit is {MAX_EXPRESSION_CHARS})"
        )
    text = normalise(expression)
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculationError(
            f"could not read {expression.strip()!r} as arithmetic: use numbers, + - * / // % ** and parentheses, "
            f"functions {', '.join(FUNCTIONS)}, constants {', '.join(CONSTANTS)}"
        ) from None
    for node in ast.walk(tree):
        _check(node)
    return tree


def _check(node: ast.AST) -> None:
    if isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
        if isinstance(node, ast.operator) and type(node) not in _BINARY:
            raise CalculationError(f"operator {type(node).__name__} is not allowed; use + - * / // % **")
        if isinstance(node, ast.unaryop) and type(node) not in _UNARY:
            raise CalculationError(f"operator {type(node).__name__} is not allowed; use + - * / // % **")
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculationError(f"{node.value!r} is not a number")
        return
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return
    if isinstance(node, ast.Name):
        if node.id not in FUNCTIONS and node.id not in CONSTANTS:
            raise CalculationError(
                f"unknown name {node.id!r}: allowed functions are {', '.join(FUNCTIONS)}; "
                f"allowed constants are {', '.join(CONSTANTS)}"
            )
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise CalculationError(f"only these functions can be called: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise CalculationError(f"{node.func.id}() takes positional arguments only")
        return
    if isinstance(node, ast.Attribute):
        raise CalculationError("attribute access is not allowed in arithmetic")
    raise CalculationError(f"{type(node).__name__} is not allowed in arithmetic")


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise CalculationError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("the result is too large (or undefined) to represent")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("the result is too large: exact integers are limited to about 1,000 digits")
    return cast(Number, value)


def _int_power_bits(base: int, exponent: int) -> int:
    """A lower bound on the size in bits of ``base ** exponent``, computed without computing it."""
    if exponent <= 0 or abs(base) <= 1:
        return 1
    return (abs(base).bit_length() - 1) * exponent


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculationError(f"the exponent {exponent} is too large (the limit is {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and _int_power_bits(base, exponent) > MAX_INT_BITS:
        raise CalculationError("the result is too large: exact integers are limited to about 1,000 digits")
    return _checked(operator.pow(base, exponent))


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        return _checked(node.value)
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise CalculationError(f"{node.id} is a function: call it like {node.id}(2)")
    if isinstance(node, ast.UnaryOp):
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name not in FUNCTIONS:
            raise CalculationError(f"{name} is a constant, not a function")
        args = [_eval(arg) for arg in node.args]
        try:
            return _checked(FUNCTIONS[name](*args))
        except CalculationError:
            raise
        except TypeError:
            raise CalculationError(f"wrong number of arguments to {name}()") from None
        except ValueError:
            # The math module's domain errors ("math domain error", "expected a nonnegative input").
            shown = ", ".join(format_number(a) for a in args)
            raise CalculationError(f"{name}({shown}) is undefined (outside the function's domain)") from None
    raise CalculationError(f"{type(node).__name__} is not allowed in arithmetic")  # pragma: no cover - parse() checked


def _evaluate_tree(tree: ast.Expression) -> Number:
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise CalculationError("division by zero is undefined") from None
    except OverflowError:
        raise CalculationError("the result is too large to represent") from None
    except RecursionError:
        raise CalculationError("the expression is nested too deeply") from None


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; raises ValueError with a readable reason."""
    return _evaluate_tree(parse(expression))


def format_number(value: Number) -> str:
    """``value`` for people: exact integers as is, floats to 12 significant digits, no ``.0``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.{SIGNIFICANT_DIGITS}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text


def calculate(
    expression: Annotated[str, "Arithmetic to evaluate, such as '12 * (3 + 4)', 'sqrt(2) ** 2' or 'log(8, 2)'"],
) -> str:
    """Evaluate an arithmetic expression exactly and safely.

    Supports + - * / // % ** (or ^), parentheses, the functions sqrt, cbrt,
    sin, cos, tan, asin, acos, atan (radians), degrees, radians, log(x) (natural)
    or log(x, base), ln, log10, log2, exp, abs, round, floor, ceil, factorial,
    and the constants pi, e and tau. Example: "12 * (3 + 4)".
    """
    tree = parse(expression)
    value = _evaluate_tree(tree)
    return f"{ast.unparse(tree)} = {format_number(value)}"
