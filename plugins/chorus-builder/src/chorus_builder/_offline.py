"""The builder's members when Chorus runs its offline model: each writes its step from the user's
request (and the steps before it) deterministically, with :mod:`chorus_builder._skeletons`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    ModelClientStreamingChunkEvent,
    TextMessage,
)
from autogen_core import CancellationToken

from chorus import AgentContext, split_attachments
from chorus_builder._skeletons import Blueprint, architecture, blueprint, plan_steps

Step = Callable[["OfflineStep", str], Awaitable[str]]
OFFLINE_NOTE = ("_Offline model: this is a skeleton from a template. Set `CHORUS_MODEL` to a real model and the "
                "builder writes the whole program._")


class OfflineStep(BaseChatAgent):
    """One pipeline step that answers without a model: ``step(agent, request)`` writes its message."""

    def __init__(self, context: AgentContext, step: Step) -> None:
        super().__init__(context.name, context.description)
        self.context = context
        self.step = step
        self.seen: list[tuple[str, str]] = []
        self.token = CancellationToken()

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        async for item in self.on_messages_stream(messages, cancellation_token):
            if isinstance(item, Response):
                return item
        raise AssertionError("the step ended without a response")

    async def on_messages_stream(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken,
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        self.seen.extend((m.source, m.to_text()) for m in messages)
        self.token = cancellation_token
        text = await self.step(self, self.request())
        reply = TextMessage(content=text, source=self.name)
        if self.context.stream:
            # Streamed like the offline model (CHORUS_OFFLINE_TOKEN_DELAY between words, at most 10 s a
            # step), so the page shows each step as it is written and where the pipeline is.
            pieces = re.findall(r"\S+\s*|\s+", text)
            pace = min(self.context.settings.offline_token_delay or 0.0, 10.0 / max(len(pieces), 1))
            for piece in pieces:
                yield ModelClientStreamingChunkEvent(content=piece, source=self.name, full_message_id=reply.id)
                if pace > 0:
                    await asyncio.sleep(pace)
        self.seen.append((self.name, text))
        yield Response(chat_message=reply)

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        self.seen.clear()

    async def save_state(self) -> dict[str, Any]:
        return {"seen": [list(pair) for pair in self.seen]}

    async def load_state(self, state: Any) -> None:
        self.seen = [(str(a), str(b)) for a, b in state.get("seen", [])]

    def request(self) -> str:
        """The user's latest request."""
        return next((text for source, text in reversed(self.seen) if source == "user"), "")

    async def search_knowledge(self, query: str) -> str | None:
        """The knowledge base's answer (Chorus's ``search_knowledge`` tool), when the agent has it."""
        tool = next((t for t in self.context.tools if t.name == "search_knowledge"), None)
        if tool is None:
            return None
        result = await tool.run_json({"query": query}, self.token)
        return tool.return_value_as_string(result)


def _plan_of(request: str) -> Blueprint:
    words, _files = split_attachments(request)
    return blueprint(words)


async def research(agent: OfflineStep, request: str) -> str:
    words, files = split_attachments(request)
    plan = blueprint(words)
    lines = [f"**Research notes** for: “{' '.join(words.split())[:200]}”", ""]
    lines.append(f"- What is asked: {plan.what}" + (f" about *{plan.subject}*." if plan.subject else "."))
    found = await agent.search_knowledge(words)
    if found:
        first = " ".join(found.split())
        lines.append(f"- The knowledge base: {first[:300]}{'…' if len(first) > 300 else ''}")
    asked = {w.lower() for w in re.findall(r"[A-Za-z]{4,}", words)}
    for file in files:
        text_lines = file.text.splitlines()
        relevant = [ln.strip() for ln in text_lines if asked & {w.lower() for w in re.findall(r"[A-Za-z]{4,}", ln)}]
        quote = "; ".join(relevant[:3]) or (text_lines[0].strip() if text_lines else "(empty)")
        lines.append(f"- Your file **{file.name}** ({len(text_lines)} lines): {quote[:300]}")
    if not files:
        lines.append("- No files in this conversation to read.")
    return "\n".join(lines)


async def plan(agent: OfflineStep, request: str) -> str:
    found = _plan_of(request)
    steps = "\n".join(f"{i}. {step}" for i, step in enumerate(plan_steps(found), 1))
    return f"**Plan** for {found.what}:\n\n{steps}"


async def execute(agent: OfflineStep, request: str) -> str:
    found = _plan_of(request)
    notes = "\n".join(f"- {note}" for note in architecture(found))
    return f"**Plan checked.** Architecture notes:\n\n{notes}"


async def code(agent: OfflineStep, request: str) -> str:
    found = _plan_of(request)
    if not found.files:
        return ("I can't write code for this request offline: the offline builder has skeletons for a "
                "command-line tool, a small web API and a game loop only. The plan above still stands; with a "
                "real model (`CHORUS_MODEL`) I write the code.")
    parts = [f"Here is {found.what} to start from ({len(found.files)} file{'s' if len(found.files) > 1 else ''}):"]
    for name, content in found.files.items():
        parts.append(f"### File: `{name}`\n```python\n{content.rstrip()}\n```")
    parts.append(OFFLINE_NOTE)
    return "\n\n".join(parts)


async def finish(agent: OfflineStep, request: str) -> str:
    found = _plan_of(request)
    if not found.files:
        return ("That's the research, a plan and its checks for your request. The offline builder has no "
                "skeleton for it, so there is no code yet: with a real model set in `CHORUS_MODEL`, ask again "
                "and the coder writes it.")
    main = next(iter(found.files))
    run = {"cli": f"python {main} --help", "api": f"python {main} --self-test",
           "game": f"python {main} --demo"}[found.kind or "cli"]
    names = ", ".join(f"`{n}`" for n in found.files)
    return (f"Done! You have {found.what}: {names}. Download the files from the coder's message (in a terminal: "
            f"`chorus ask --team builder --save-files DIR \"...\"`), then try `{run}`. Next: replace the "
            f"placeholder logic with yours, following the plan.")


STEPS: dict[str, Step] = {"researcher": research, "planner": plan, "executor": execute, "coder": code,
                          "finalizer": finish}
