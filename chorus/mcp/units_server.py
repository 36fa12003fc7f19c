"""An example MCP server, written with the ``mcp`` SDK: unit conversions over stdio (or HTTP).

The team file ``agents/units.yaml`` starts it (``python -m chorus.mcp.units_server``) to show a
team whose tools come from an MCP server; ``python -m chorus.mcp.units_server http 8765`` serves
it over streamable HTTP at ``http://127.0.0.1:8765/mcp`` instead.
"""

from __future__ import annotations

import sys

from mcp.server.fastmcp import FastMCP

server = FastMCP("units", log_level="WARNING")


def _number(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


@server.tool()
def km_to_miles(km: float) -> str:
    """Convert kilometres to miles."""
    return f"{_number(km)} km = {_number(km / 1.609344)} miles"


@server.tool()
def miles_to_km(miles: float) -> str:
    """Convert miles to kilometres."""
    return f"{_number(miles)} miles = {_number(miles * 1.609344)} km"


@server.tool()
def celsius_to_fahrenheit(celsius: float) -> str:
    """Convert degrees Celsius to degrees Fahrenheit."""
    return f"{_number(celsius)} °C = {_number(celsius * 9 / 5 + 32)} °F"


@server.tool()
def fahrenheit_to_celsius(fahrenheit: float) -> str:
    """Convert degrees Fahrenheit to degrees Celsius."""
    return f"{_number(fahrenheit)} °F = {_number((fahrenheit - 32) * 5 / 9)} °C"


@server.tool()
def kg_to_pounds(kg: float) -> str:
    """Convert kilograms to pounds."""
    return f"{_number(kg)} kg = {_number(kg / 0.45359237)} lb"


@server.tool()
def pounds_to_kg(pounds: float) -> str:
    """Convert pounds to kilograms."""
    return f"{_number(pounds)} lb = {_number(pounds * 0.45359237)} kg"


def main(argv: list[str]) -> None:
    if argv[:1] == ["http"]:
        server.settings.host = "127.0.0.1"
        server.settings.port = int(argv[1]) if len(argv) > 1 else 8765
        server.run("streamable-http")
    else:
        server.run("stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
