"""The offline model: deterministic, local, and useful without a network or a key.

It does not understand prose. It reads the specs Chorus hands it
(:class:`~chorus.models.local.ModelHints`): as a team's selector it routes
the user's message to the member whose keywords, tools and description match
it best; as an agent it calls a tool when the message asks for what a tool
provides (the tool's ``offline_args`` parser, or numbers and words matched to
the tool's parameters), reports the tool's result, and otherwise says, once and
briefly, what the team can do and how to switch to a real model.

Matching forgives the way people type (:mod:`chorus.models._understand`):
inflections, everyday synonyms, typos against the words the team's specs use,
chat spellings; :mod:`chorus.models._fit` scores a message against tools and
agents. Specs teach it more: a tool's keywords, examples and description are
its vocabulary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from chorus.attachments import Attachment, split_attachments
from chorus.models._convert import text_of
from chorus.models._fit import agent_score, keyword_hits, lexicon_of, parsed_args, tool_score
from chorus.models._handoff import handoff_call
from chorus.models._review import CANNOT, answered_by, review
from chorus.models._selection import SELECTOR_INSTRUCTIONS, checked_selection, keyword_speaker
from chorus.models._understand import read
from chorus.models.local import ModelHints, ModelReply, ModelRequest, OtherTeam, ToolCall, register_local_model
from chorus.plugins._specs import AgentSpec, ToolSpec
from chorus.prompts import MEMORY_HEADER

OFFLINE_NOTICE = (
    "You are talking to Chorus's **offline model**: a deterministic local stand-in that routes "
    "questions, calls tools and explains itself, but does not understand free-form requests. "
    "Set `CHORUS_MODEL` to a litellm model string (for example `gpt-4o-mini` with `OPENAI_API_KEY`, "
    "or `ollama/llama3.1`) and restart to use a real model."
)

CONFIGURE_HINT = (
    "To use a real model, set `CHORUS_MODEL` to any litellm model string and restart Chorus, "
    "for example:\n\n"
    "- OpenAI: `CHORUS_MODEL=gpt-4o-mini` and `OPENAI_API_KEY=...`\n"
    "- Anthropic: `CHORUS_MODEL=anthropic/claude-3-5-haiku-latest` and `ANTHROPIC_API_KEY=...`\n"
    "- Ollama on this machine: `CHORUS_MODEL=ollama/llama3.1`\n"
    "- Any OpenAI-compatible server: `CHORUS_MODEL=openai/<model>` and `CHORUS_MODEL_API_BASE=http://host:port/v1`"
)

_STOPWORDS = frozenset(
    "a an the and or but of to in on at for from by with about as is are was were be been am do does did "
    "i me my you your we our it its this that these those what which who whom how can could would should "
    "will shall may might please tell show give get let us some any there here just like want need know "
    "have has had not no yes if then than so very much many more most also too into out up down over "
    "use using used one".split()
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-case content words of ``text`` with a light plural stem."""
    result = []
    for w in _WORD.findall(text.lower()):
        if w in _STOPWORDS:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        result.append(w)
    return result


_GREETING = re.compile(r"^\s*(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening)|greetings)\b", re.I)
_THANKS = re.compile(r"\b(thanks|thank you|thx|cheers)\b", re.I)
_HELP = re.compile(
    r"\b(help|what can you do|what do you do|who are you|what are you|capabilit\w*|what can i ask)\b", re.I
)
_MODEL_SETUP = re.compile(
    r"\b(real model|api key|openai|anthropic|claude|gpt|ollama|llm|provider|configure|chorus_model|litellm)\b",
    re.I,
)


class OfflineModel:
    """Chorus's deterministic local model (``CHORUS_MODEL=offline``)."""

    def __init__(self, token_delay: float = 0.0) -> None:
        self.token_delay = token_delay

    async def reply(self, request: ModelRequest) -> ModelReply:
        if request.hints.role == "selector":
            return ModelReply(text=self.select_speaker(request))
        if request.hints.role == "reviewer":
            return ModelReply(text=review(request.messages, request.hints))
        return self.answer(request)

    # -- selector ---------------------------------------------------------------------------

    def select_speaker(self, request: ModelRequest) -> str:
        return keyword_speaker(request.messages, request.hints)

    # -- agent ------------------------------------------------------------------------------

    def answer(self, request: ModelRequest) -> ModelReply:
        messages = request.messages
        if messages and messages[-1].get("role") == "tool":
            return ModelReply(text=_report_tool_results(messages))
        user_text = _last_user_message(messages)
        question, files = split_attachments(user_text)
        if files:
            return ModelReply(text=answer_from_files(question, files))
        call = handoff_call(user_text, request) or self._tool_call(user_text, request)
        if call is not None:
            return ModelReply(tool_calls=(call,))
        summarised = _team_summary_given(messages)
        remembered = _remembered(messages)
        if not summarised and (better := team_for(user_text, request.hints)) is not None:
            return ModelReply(text=_pointer(*better, remembered))
        if remembered and _ABOUT_ME.search(user_text):
            return ModelReply(text=_about_you(remembered))
        if not remembered and _ASKS_MEMORY.search(user_text):
            return ModelReply(text=NOTHING_REMEMBERED)
        text = self._text_answer(user_text, request.hints, summarised=summarised)
        if text.startswith(CANNOT) and (others := answered_by(messages, request.hints.agent)):
            text = f"{' and '.join(others)} answered that above; I have nothing to add (offline model)."
        return ModelReply(text=text)

    def _tool_call(self, text: str, request: ModelRequest) -> ToolCall | None:
        """The offered tool the message asks for, with its arguments, if any.

        Tools are tried best-scoring first; a tool counts when its keywords or description match
        the message, or when its own ``offline_args`` parser finds its arguments in it.
        """
        if not text or request.tool_choice == "none":
            return None
        lexicon = lexicon_of(request.hints)
        reading = read(text, lexicon)
        offered = [t["function"]["name"] for t in request.tools]
        ranked = []
        for index, name in enumerate(offered):
            spec = request.hints.tools.get(name)
            if spec is None:
                continue
            score = tool_score(reading, spec)
            if spec.offline_args is not None or keyword_hits(reading, spec.keywords) or score >= 2:
                ranked.append((score, -index, spec))
        for _score, _order, spec in sorted(ranked, key=lambda r: (r[0], r[1]), reverse=True):
            schema = next(t["function"] for t in request.tools if t["function"]["name"] == spec.name)
            if spec.offline_args is not None:
                parsed = parsed_args(reading, spec, lexicon)
                args = dict(parsed) if parsed is not None else None
            else:
                args = _arguments(reading.corrected, spec, schema.get("parameters") or {})
            if args is not None:
                return ToolCall(name=spec.name, arguments=args)
        return None

    def _text_answer(self, text: str, hints: ModelHints, *, summarised: bool = False) -> str:
        me = hints.agents.get(hints.agent or "")
        if summarised:  # a teammate already listed what the team can do (this agent too) in this turn
            return f"Hello! I'm **{me.name if me else 'an agent'}**, on this team too: see above for what we can do."
        if _MODEL_SETUP.search(text):
            return CONFIGURE_HINT
        if _THANKS.search(text) and len(words(text)) <= 4:
            return "You're welcome! Ask me anything else I can help with."
        if _GREETING.search(text) or _HELP.search(text):
            return f"Hello! {_team_summary(hints)}\n\n{_offline_footer()}"
        return _cannot_answer(hints)


def answer_from_files(question: str, files: Iterable[Attachment], *, most: int = 6) -> str:
    """What a deterministic reader can say about attached files: the lines that share words with
    the question, quoted with their file; else what each file is and how it begins."""
    wanted = set(words(question))
    files = list(files)
    hits: list[tuple[int, str, str]] = []
    for item in files:
        for line in item.text.splitlines():
            score = len(wanted & set(words(line)))
            if score and line.strip():
                hits.append((score, item.name, line.strip()))
    if hits:
        hits.sort(key=lambda h: -h[0])
        quoted = "\n".join(f"> {line[:300]}\n> — _{name}_" for _s, name, line in hits[:most])
        return f"Here is what the attached {'file says' if len(files) == 1 else 'files say'} about that:\n\n{quoted}"
    parts = []
    for item in files:
        lines = [line for line in item.text.splitlines() if line.strip()]
        start = "\n".join(f"> {line[:200]}" for line in lines[:3]) or "> (empty)"
        size = f"{_count(len(lines), 'line')}, {_count(len(item.text.split()), 'word')}"
        parts.append(f"**{item.name}**: {size}. It begins:\n\n{start}")
    ask = "" if wanted else "\n\nAsk about a word or topic in it and I will quote the lines that mention it."
    return "You attached:\n\n" + "\n\n".join(parts) + ask


_ABOUT_ME = re.compile(
    r"\b(about me|what do you (know|remember)|do you remember|remember me|my favou?rites?|who am i|"
    r"recommend|suggest|what should i (listen|read|watch|try))\b", re.I
)


_ASKS_MEMORY = re.compile(r"\b(about me|what do you (know|remember)|do you remember|remember me|who am i)\b", re.I)
NOTHING_REMEMBERED = (
    "I don't remember anything about you yet. Tell me something worth keeping, such as “Remember that I "
    "live in Lisbon”, and I'll remember it in your later conversations too (when you are logged in)."
)


def _remembered(messages: list[dict[str, Any]]) -> list[str]:
    """The user's memories Chorus added to the context (:data:`chorus.prompts.MEMORY_HEADER`)."""
    found: list[str] = []
    for message in messages:
        text = text_of(message)
        if message.get("role") == "system" and text.startswith(MEMORY_HEADER):
            for line in text.splitlines()[1:]:
                item = line.removeprefix("- ").strip()
                if item and item not in found:
                    found.append(item)
    return found


def _about_you(remembered: list[str]) -> str:
    lines = "\n".join(f"- {item}" for item in remembered)
    return (f"Here is what I remember about you from our conversations:\n\n{lines}\n\n"
            "You can see and delete these memories with the **Memories** button.")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def intro_of(me: AgentSpec | None) -> str:
    return f"I'm **{me.name}**: {me.description.rstrip('.')}." if me else "I'm a Chorus agent."


def _team_summary_given(messages: list[dict[str, Any]]) -> bool:
    """Whether a teammate's message after the user's latest one already has the team summary."""
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("name", "user") == "user":
            return False
        if _SUMMARY_HEAD in text_of(message):
            return True
    return False


_SUMMARY_HEAD = "Here is what this team can do:"


def _offline_footer() -> str:
    return "_Offline model in use: set `CHORUS_MODEL` to a litellm model string for free-form answers._"


def _team_summary(hints: ModelHints) -> str:
    if not hints.agents:
        return "This team has no agents with tools."
    lines = [_SUMMARY_HEAD]
    for spec in hints.agents.values():
        example = _example_of(spec, hints)
        tried = f" Try: “{example}”" if example else ""
        lines.append(f"- **{spec.name}**: {spec.description.rstrip('.')}.{tried}")
    return "\n".join(lines)


def _example_of(agent: AgentSpec, hints: ModelHints) -> str | None:
    examples = list(agent.examples)
    for name in agent.tools:
        tool = hints.tools.get(name)
        if tool is not None:
            examples.extend(tool.examples)
    return examples[0] if examples else None


def team_for(text: str, hints: ModelHints) -> tuple[OtherTeam, AgentSpec] | None:
    """Another team whose agent fits ``text`` well where this team has nothing for it: the team and
    that agent. It takes one of the agent's (or its tools') keywords, or a tool parser that finds
    its arguments, and a score of 3 or more; the best such agent wins, the catalog's order breaks ties."""
    if _GREETING.search(text) or _HELP.search(text) or _MODEL_SETUP.search(text):
        return None
    best: tuple[int, OtherTeam, AgentSpec] | None = None
    own_tools = {name for agent in hints.agents.values() for name in agent.tools}  # (what this team can do too)
    for team in hints.elsewhere:
        agents = {a.name: a for a in team.agents if a.name not in hints.agents}
        if not agents:
            continue
        lexicon = lexicon_of(ModelHints(agents=agents, tools=hints.tools))
        reading = read(text, lexicon)
        for agent in agents.values():
            tools = [t for name in agent.tools if name not in own_tools and (t := hints.tools.get(name)) is not None]
            hits = keyword_hits(reading, (*agent.keywords, *(k for t in tools for k in t.keywords)))
            parsed = any(parsed_args(reading, t, lexicon) is not None for t in tools if t.offline_args is not None)
            if not hits and not parsed:
                continue
            score = agent_score(reading, agent, hints.tools, lexicon)
            if score >= 3 and (best is None or score > best[0]):
                best = (score, team, agent)
    return (best[1], best[2]) if best is not None else None


def _pointer(team: OtherTeam, agent: AgentSpec, remembered: list[str]) -> str:
    """Where to ask instead: the team that can answer, and how to switch to it."""
    taste = ""
    if remembered:
        taste = "\n\nIt will see what I remember about you too:\n" + "\n".join(f"- {m}" for m in remembered)
    return (
        f"That's one for the **{team.title}** team, whose **{agent.name}** agent can help "
        f"({agent.description.rstrip('.')}). This team can't answer it.\n\n"
        f"Pick **{team.title}** in the team menu at the top of the chat and ask again "
        f"(in a terminal: `chorus ask --team {team.name} \"...\"`).{taste}"
    )


def _cannot_answer(hints: ModelHints) -> str:
    """One short, kind answer to what no tool covers: what the team can do instead, once."""
    asks = [f"- **{spec.name}** ({_role_of(spec)}): “{example}”" for spec in hints.agents.values()
            if (example := _example_of(spec, hints))]
    offer = ("Here is what you can ask this team:\n" + "\n".join(asks)) if asks else (
        "This team has no tools to answer with.")
    return (
        f"{CANNOT} answer that one: Chorus is running its offline model, which only does what "
        f"this team's tools do.\n\n{offer}\n\n"
        "_Free-form answers need a real model: set `CHORUS_MODEL` to one._"
    )


def _role_of(agent: AgentSpec) -> str:
    """The first words of an agent's description ("A general assistant", "Explains Chorus itself")."""
    role = re.split(r"[:;(.]|, | - | — ", agent.description, maxsplit=1)[0].strip()
    return role if role[1:2].isupper() else role[:1].lower() + role[1:]


def _report_tool_results(messages: list[dict[str, Any]]) -> str:
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(text_of(message).strip())
    results.reverse()
    return "\n\n".join(_humanise(r) for r in results if r) or "The tool returned nothing."


def _humanise(result: str) -> str:
    try:
        value = json.loads(result)
    except ValueError:
        return result
    if isinstance(value, dict):
        return "\n".join(f"- **{k}**: {v}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(f"- {v}" for v in value)
    return str(value)


def _last_user_message(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("name", "user") == "user":
            return text_of(message)
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message)
    return ""


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def _arguments(text: str, spec: ToolSpec, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """Arguments for ``spec`` from ``text``, or None when the required ones can't be found."""
    if spec.offline_args is not None:
        parsed = spec.offline_args(text)
        return dict(parsed) if parsed is not None else None
    props: Mapping[str, Any] = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    numbers = [float(n.replace(",", ".")) for n in _NUMBER.findall(text)]
    args: dict[str, Any] = {}
    for name, prop in props.items():
        kind = prop.get("type")
        if "enum" in prop:
            choice = next((v for v in prop["enum"] if str(v).lower() in text.lower()), None)
            if choice is not None:
                args[name] = choice
        elif kind in ("number", "integer") and numbers:
            value = numbers.pop(0)
            args[name] = int(value) if kind == "integer" else value
        elif kind == "string" and name in required and len([p for p in props if p in required]) == 1:
            args[name] = text.strip()
    if not required <= set(args):
        return None
    return args


register_local_model("offline", lambda: OfflineModel(token_delay=_offline_delay()))


def _offline_delay() -> float:
    from chorus.settings import get_settings

    return get_settings().offline_token_delay


__all__ = [
    "CONFIGURE_HINT", "OFFLINE_NOTICE", "SELECTOR_INSTRUCTIONS", "OfflineModel", "answer_from_files",
    "checked_selection", "intro_of", "keyword_speaker", "team_for", "words",
]
