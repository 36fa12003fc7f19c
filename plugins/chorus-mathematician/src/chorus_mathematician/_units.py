"""Unit conversion: length, mass, volume, time and temperature, by symbol or by name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from chorus_mathematician._calculator import format_number


@dataclass(frozen=True)
class Unit:
    """A unit: its symbol, the quantity it measures and its size in that quantity's base unit.

    Base units: metre, kilogram, litre, second. Temperatures convert through
    Celsius instead of by a factor, so their ``factor`` is unused.
    """

    symbol: str
    name: str
    quantity: str
    factor: float
    aliases: tuple[str, ...] = ()


_TABLE: tuple[Unit, ...] = (
    Unit("mm", "millimetres", "length", 0.001, ("millimeter", "millimetre")),
    Unit("cm", "centimetres", "length", 0.01, ("centimeter", "centimetre")),
    Unit("m", "metres", "length", 1.0, ("meter", "metre")),
    Unit("km", "kilometres", "length", 1000.0, ("kilometer", "kilometre", "kms")),
    Unit("in", "inches", "length", 0.0254, ("inch",)),
    Unit("ft", "feet", "length", 0.3048, ("foot", "feet")),
    Unit("yd", "yards", "length", 0.9144, ("yard",)),
    Unit("mi", "miles", "length", 1609.344, ("mile",)),
    Unit("nmi", "nautical miles", "length", 1852.0, ("nautical mile",)),
    Unit("mg", "milligrams", "mass", 1e-6, ("milligram", "milligramme")),
    Unit("g", "grams", "mass", 0.001, ("gram", "gramme")),
    Unit("kg", "kilograms", "mass", 1.0, ("kilogram", "kilogramme", "kilo")),
    Unit("t", "tonnes", "mass", 1000.0, ("tonne", "metric ton")),
    Unit("oz", "ounces", "mass", 0.028349523125, ("ounce",)),
    Unit("lb", "pounds", "mass", 0.45359237, ("pound", "lbs")),
    Unit("st", "stone", "mass", 6.35029318, ("stone",)),
    Unit("ml", "millilitres", "volume", 0.001, ("milliliter", "millilitre", "cc")),
    Unit("cl", "centilitres", "volume", 0.01, ("centiliter", "centilitre")),
    Unit("dl", "decilitres", "volume", 0.1, ("deciliter", "decilitre")),
    Unit("l", "litres", "volume", 1.0, ("liter", "litre", "ltr")),
    Unit("m3", "cubic metres", "volume", 1000.0, ("cubic meter", "cubic metre", "m^3", "m³")),
    Unit("tsp", "US teaspoons", "volume", 0.00492892159375, ("teaspoon",)),
    Unit("tbsp", "US tablespoons", "volume", 0.01478676478125, ("tablespoon",)),
    Unit("fl oz", "US fluid ounces", "volume", 0.0295735295625, ("fluid ounce", "floz", "fl. oz")),
    Unit("cup", "US cups", "volume", 0.2365882365, ("cup",)),
    Unit("pt", "US pints", "volume", 0.473176473, ("pint",)),
    Unit("qt", "US quarts", "volume", 0.946352946, ("quart",)),
    Unit("gal", "US gallons", "volume", 3.785411784, ("gallon", "us gallon", "us gal")),
    Unit("imp gal", "imperial gallons", "volume", 4.54609, ("imperial gallon", "uk gallon", "uk gal")),
    Unit("ms", "milliseconds", "time", 0.001, ("millisecond", "msec")),
    Unit("s", "seconds", "time", 1.0, ("second", "sec")),
    Unit("min", "minutes", "time", 60.0, ("minute",)),
    Unit("h", "hours", "time", 3600.0, ("hour", "hr")),
    Unit("day", "days", "time", 86400.0, ("d",)),
    Unit("week", "weeks", "time", 604800.0, ("wk",)),
    # A Julian year (365.25 days); a month is a twelfth of it.
    Unit("month", "months", "time", 2629800.0, ("mo",)),
    Unit("year", "years", "time", 31557600.0, ("yr",)),
    Unit("°C", "degrees Celsius", "temperature", 1.0, ("c", "celsius", "centigrade")),
    Unit("°F", "degrees Fahrenheit", "temperature", 1.0, ("f", "fahrenheit")),
    Unit("K", "kelvin", "temperature", 1.0, ("k", "kelvin")),
)

_BY_KEY: dict[str, Unit] = {}
for _entry in _TABLE:
    for _alias in (_entry.symbol, _entry.name, *_entry.aliases):
        _BY_KEY.setdefault(_alias.lower(), _entry)

_QUANTITIES = ("length", "mass", "volume", "time", "temperature")


def supported_units() -> str:
    """Every unit symbol, grouped by quantity, for error messages and help."""
    groups = []
    for quantity in _QUANTITIES:
        symbols = ", ".join(u.symbol for u in _TABLE if u.quantity == quantity)
        groups.append(f"{quantity}: {symbols}")
    return "; ".join(groups)


def _key(text: str) -> str:
    key = " ".join(text.lower().replace("°", " ").replace("º", " ").replace(".", " ").split())
    for prefix in ("degrees ", "degree ", "deg "):
        key = key.removeprefix(prefix)
    return key


def find_unit(text: str) -> Unit | None:
    """The unit ``text`` names (symbol, name or plural: "km", "Kilometers", "°F", "lbs"), or None."""
    key = _key(text)
    if not key:
        return None
    candidates = [key]
    if key.endswith("s"):
        candidates.append(key[:-1])
    if key.endswith("es"):
        candidates.append(key[:-2])
    return next((_BY_KEY[c] for c in candidates if c in _BY_KEY), None)


def _unit(text: str) -> Unit:
    unit = find_unit(text) if isinstance(text, str) else None
    if unit is None:
        raise ValueError(f"unknown unit {text!r}. Supported units are {supported_units()}")
    return unit


# Symbols that are whole words read better in the plural: "16 cups", not "16 cup".
_WORD_SYMBOLS = frozenset({"cup", "day", "week", "month", "year"})


def _label(amount: str, unit: Unit) -> str:
    plural = unit.symbol in _WORD_SYMBOLS and amount not in ("1", "-1")
    return f"{amount} {unit.symbol}{'s' if plural else ''}"


def _to_celsius(value: float, unit: Unit) -> float:
    if unit.symbol == "°F":
        return (value - 32.0) * 5.0 / 9.0
    if unit.symbol == "K":
        return value - 273.15
    return value


def _from_celsius(value: float, unit: Unit) -> float:
    if unit.symbol == "°F":
        return value * 9.0 / 5.0 + 32.0
    if unit.symbol == "K":
        return value + 273.15
    return value


def convert_units(
    value: Annotated[float, "The amount to convert, in from_unit"],
    from_unit: Annotated[str, "The unit of value: a symbol or name such as 'km', 'miles', 'lb', 'F'"],
    to_unit: Annotated[str, "The unit to convert to, of the same kind of quantity"],
) -> str:
    """Convert a value between units of the same kind of quantity.

    Length: mm, cm, m, km, in, ft, yd, mi, nmi. Mass: mg, g, kg, t, oz, lb, st.
    Volume: ml, cl, dl, l, m3, tsp, tbsp, fl oz, cup, pt, qt, gal (US), imp gal.
    Time: ms, s, min, h, day, week, month, year. Temperature: C, F, K.
    Units may be written as symbols or names, singular or plural ("miles", "kilograms", "fahrenheit").
    """
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(amount):
        raise ValueError("the value to convert must be a finite number")
    source, target = _unit(from_unit), _unit(to_unit)
    if source.quantity != target.quantity:
        raise ValueError(
            f"cannot convert {source.name} ({source.quantity}) to {target.name} ({target.quantity}): "
            f"both units must measure the same kind of quantity. Supported units are {supported_units()}"
        )
    if source.quantity == "temperature":
        celsius = _to_celsius(amount, source)
        if celsius < -273.15 - 1e-9:
            raise ValueError(f"{format_number(amount)} {source.symbol} is below absolute zero")
        result = _from_celsius(celsius, target)
    else:
        result = amount * source.factor / target.factor
    return f"{_label(format_number(amount), source)} = {_label(format_number(result), target)}"
