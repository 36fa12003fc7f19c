"""How well a message fits a tool or an agent, for the offline model: its selector and its tool calls.

Scores compare the message as :mod:`chorus.models._understand` reads it (stems, synonyms, typos
fixed) with the specs: keyword phrases count 3 (2 when said with a synonym), words of a
description 1, and a tool whose own ``offline_args`` parser finds its arguments in the message
is strong evidence. Parsers see the message as typed, then with its typos corrected, then
rephrased in the tool's own words, so a plugin's parser that looks for "refund" also
understands "can I get my money back?".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from chorus.models._understand import Lexicon, Reading, concepts, phrase_hits, phrase_score, read
from chorus.models.local import ModelHints
from chorus.plugins._specs import AgentSpec, ToolSpec

log = logging.getLogger("chorus.models.offline")


def _spec_words(*texts: str) -> frozenset[str]:
    return _spec_concepts(" ".join(texts))


@lru_cache(maxsize=4096)
def _spec_concepts(text: str) -> frozenset[str]:
    return frozenset(concepts(text))


def keyword_hits(text: str | Reading, keywords: Iterable[str]) -> int:
    reading = text if isinstance(text, Reading) else read(text)
    return phrase_hits(list(reading.sequence), keywords)


def _keyword_score(reading: Reading, keywords: Iterable[str]) -> int:
    return phrase_score(reading, keywords)


def tool_score(text: str | Reading, tool: ToolSpec) -> int:
    """How strongly ``text`` asks for ``tool``: keyword phrases count triple, words its name and
    description use (or synonyms of them) once."""
    reading = text if isinstance(text, Reading) else read(text)
    described = _spec_words(tool.name.replace("_", " "), tool.description)
    return _keyword_score(reading, tool.keywords) + len(reading.content & described)


def agent_score(text: str | Reading, agent: AgentSpec, tools: Mapping[str, ToolSpec],
                lexicon: Lexicon | None = None, *, shared: frozenset[str] = frozenset()) -> int:
    """How well ``agent`` fits ``text``: its keywords and those of its tools that can answer (each
    meaning once), the words of their descriptions (but ``shared``, words other members use too),
    and 2 for each tool whose own parser found its arguments in the message."""
    reading = text if isinstance(text, Reading) else read(text, lexicon)
    able = [t for name in agent.tools if (t := tools.get(name)) is not None and _can_call(reading, t, lexicon)]
    keywords = (*agent.keywords, *(k for t in able for k in t.keywords))
    described = _spec_words(agent.description, *(f"{t.name.replace('_', ' ')} {t.description}" for t in able))
    parsed = sum(2 for t in able if t.offline_args is not None)
    return _keyword_score(reading, keywords) + len(reading.content & (described - shared)) + parsed


def shared_words(agents: Iterable[AgentSpec], tools: Mapping[str, ToolSpec]) -> frozenset[str]:
    """Words the descriptions of two members or more use: they tell the members apart from nothing."""
    seen: dict[str, int] = {}
    for agent in agents:
        own = _spec_words(agent.description, *(f"{t.name.replace('_', ' ')} {t.description}"
                                               for name in agent.tools if (t := tools.get(name)) is not None))
        for word in own:
            seen[word] = seen.get(word, 0) + 1
    return frozenset(w for w, n in seen.items() if n > 1)


def _can_call(text: str | Reading, tool: ToolSpec, lexicon: Lexicon | None = None) -> bool:
    """False when the tool's own parser says the message gives it nothing to work with.

    Keeps a generic keyword ("what is") from routing every question to an agent
    whose tool could not answer it.
    """
    if tool.offline_args is None:
        return True
    reading = text if isinstance(text, Reading) else read(text, lexicon)
    return parsed_args(reading, tool, lexicon) is not None


def parsed_args(reading: Reading, tool: ToolSpec, lexicon: Lexicon | None) -> Mapping[str, Any] | None:
    """The tool's ``offline_args`` for the message as typed, else with its typos corrected, else
    rephrased in the tool's own words ("money back" -> "refund"); None when none of them parse."""
    if tool.offline_args is None:
        return None
    tried: list[str] = []
    candidates = list(reading.variants())
    if lexicon is not None:
        candidates.append(lexicon.rephrase(reading.corrected, (*tool.keywords, *tool.examples, tool.description)))
    for variant in candidates:
        if variant in tried:
            continue
        tried.append(variant)
        try:
            parsed = tool.offline_args(variant)
        except Exception:
            log.debug("offline_args of %s failed on %r", tool.name, variant, exc_info=True)
            continue
        if parsed is not None:
            return parsed
    return None


def lexicon_of(hints: ModelHints) -> Lexicon:
    """The words the team's specs use (cached per distinct set of specs)."""
    agents = tuple(hints.agents.values())
    names = {n for a in agents for n in a.tools}
    tools = tuple(t for n, t in sorted(hints.tools.items()) if n in names or not agents)
    key = (tuple((a.name, a.description, a.keywords, a.examples) for a in agents),
           tuple((t.name, t.description, t.keywords, t.examples) for t in tools))
    return _lexicon(key)


@lru_cache(maxsize=64)
def _lexicon(key: tuple[tuple[tuple[Any, ...], ...], tuple[tuple[Any, ...], ...]]) -> Lexicon:
    texts: list[str] = []
    for part in key:
        for name, description, keywords, examples in part:
            texts.extend((name.replace("_", " "), description, *keywords, *examples))
    return Lexicon.of(texts)
