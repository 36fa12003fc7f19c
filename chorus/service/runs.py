"""Background runs (README, "Background runs"): a user's message answered by a team while nobody
waits on the line, on the same ``run_turn`` and stored conversation as the page and the API.

:class:`RunService` makes a run (``queued``), executes it (``execute``: the turn, its events
numbered and stored, the result kept) and cancels it. Executing is what a DBOS workflow does
(chorus.service.durable); when a run is executed again after its process died, the turn runs again
from the start with its finished model and tool calls answered from the run's journal
(chorus.journal), so none is repeated, and the events the first attempt already stored are not
stored twice: a client that reads them sees each once (:class:`EventLog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.approvals import Approvals
from chorus.events import DoneEvent, ErrorEvent, MessageEvent, NoticeEvent, TokenEvent, TurnEvent
from chorus.journal import current_journal
from chorus.service.conversation import ConversationError, Conversations
from chorus.store import runs as store
from chorus.store.runs import EventsTaken, Run
from chorus.store.usage import UsageLedger

log = logging.getLogger("chorus.runs")

CANCEL_POLL_S = 0.5
FLUSH_S = 0.2


class RunRefused(Exception):
    """A run that cannot be made as asked; ``status`` and ``code`` for the API, ``str()`` the reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def webhook_allowed(url: str, hosts: Sequence[str]) -> str | None:
    """Why ``url`` may not be a run's webhook (None: it may). Only http(s) URLs to a host on the
    operator's allow-list (``CHORUS_RUN_WEBHOOK_HOSTS``; ``*.example.com`` patterns) are called."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "it is not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "it must be an http:// or https:// URL"
    if parts.username or parts.password:
        return "it must not carry credentials"
    if not any(fnmatch.fnmatchcase(host, pattern.strip().lower()) for pattern in hosts if pattern.strip()):
        listed = ", ".join(h for h in hosts if h.strip()) or "none: webhooks are off"
        return f"its host {host!r} is not on the server's allow-list (CHORUS_RUN_WEBHOOK_HOSTS: {listed})"
    return None


class RunJournal:
    """The journal of one run's finished calls (chorus.journal), kept in ``chorus_run_calls``."""

    def __init__(self, engine: AsyncEngine, run_id: str, calls: dict[str, Any]) -> None:
        self.engine = engine
        self.run_id = run_id
        self.calls = calls
        self.counts: dict[str, int] = {}
        self.replayed = 0
        self.made = 0

    def key(self, kind: str, who: str) -> str:
        base = f"{kind}:{who}"
        self.counts[base] = self.counts.get(base, 0) + 1
        return f"{base}#{self.counts[base]}"

    def recorded(self, key: str) -> Any | None:
        found = self.calls.get(key)
        if found is not None:
            self.replayed += 1
        return found

    async def record(self, key: str, value: Any) -> None:
        self.calls[key] = value
        self.made += 1
        await store.record_call(self.engine, self.run_id, key, value)


LOOKAHEAD = 8
"""How far ahead in the stored events a replayed event is looked for (an event the last attempt
made that this one does not, such as a slow-model notice, is stepped over)."""
_TIMING = frozenset({"duration_ms", "latency_ms", "latency_s", "first_chunk_s", "started_ns", "message_id"})


def _signature(kind: str, data: dict[str, Any]) -> str:
    """An event as compared between attempts: its type and content, without timings or the ids
    AutoGen gives messages afresh."""
    import json

    kept = {k: v for k, v in data.items() if k not in _TIMING}
    return kind + json.dumps(kept, sort_keys=True, default=str)


class EventLog:
    """A run's events, numbered and stored in batches.

    A later attempt replays the turn, and the turn makes the events of the finished calls again.
    Those are not stored twice. Streamed tokens are counted: the first N, N being how many were
    stored, are skipped (a replayed call streams the same pieces again; the reply that was cut off
    and is asked for again goes on from where its stored tokens end). Every other event is matched
    against the stored ones in order, timings aside, and skipped when it was stored. A
    ``run_resumed`` notice marks where the new attempt's own events begin.
    """

    def __init__(self, engine: AsyncEngine, run_id: str, stored: Sequence[tuple[int, str, Any]] = ()) -> None:
        self.engine = engine
        self.run_id = run_id
        self.recovering = bool(stored)
        self.tokens_stored = sum(1 for _, kind, _ in stored if kind == "token")
        self.others_stored = [_signature(kind, data) for _, kind, data in stored
                              if kind != "token" and not (kind == "notice" and data.get("code") == "run_resumed")]
        self.tokens = 0
        self.matched = 0
        self.next_seq = max((seq for seq, _, _ in stored), default=0) + 1
        self.resumed = not self.recovering
        self.pending: list[tuple[int, str, dict[str, Any]]] = []

    def add(self, event: TurnEvent) -> None:
        data = event.to_dict()
        if isinstance(event, TokenEvent):
            self.tokens += 1
            if self.tokens <= self.tokens_stored:
                return
        else:
            signature = _signature(event.type, data)
            ahead = self.others_stored[self.matched:self.matched + LOOKAHEAD]
            if signature in ahead:
                self.matched += ahead.index(signature) + 1
                return
        self._resume()
        self._put(event.type, data)

    def _resume(self) -> None:
        if self.resumed:
            return
        self.resumed = True
        self._put("notice", NoticeEvent(
            text="The process running this run stopped; the run went on from its last finished step. A reply "
                 "that was being written then was asked for again (its message event has its whole text).",
            code="run_resumed", level="info").to_dict())

    def _put(self, kind: str, data: dict[str, Any]) -> None:
        self.pending.append((self.next_seq, kind, data))
        self.next_seq += 1

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        await store.append_events(self.engine, self.run_id, batch)


@dataclass
class Outcome:
    status: str
    result: dict[str, Any] | None
    error: str | None


class RunService:
    """Makes, executes and cancels background runs."""

    def __init__(self, conversations: Conversations, engine: AsyncEngine, worker: str = "") -> None:
        self.conversations = conversations
        self.engine = engine
        self.worker = worker
        self.sessions: dict[str, Any] = {}
        """The sessions of the runs executing in this process, by run id."""

    @property
    def chorus(self) -> Any:
        return self.conversations.chorus

    async def create(self, user: str, team: str, text: str, *, thread_id: str | None = None,
                     webhook: str | None = None, key_id: str | None = None,
                     allowed_teams: Sequence[str] | None = None) -> Run:
        settings = self.chorus.settings
        spec = self.chorus.catalog.teams.get(team) or next(
            (t for t in self.chorus.catalog.teams.values() if t.title.lower() == team.lower()), None)
        if spec is None or (allowed_teams is not None and spec.name not in allowed_teams):
            raise RunRefused(404, "team_not_found", f"No team {team!r} this key may use (GET /v1/models lists them).")
        if not text.strip():
            raise RunRefused(400, "empty_message", "'input' is empty: say what the team should do.")
        if len(text) > settings.max_message_chars:
            raise RunRefused(400, "message_too_long", f"'input' is {len(text)} characters; the limit is "
                                                      f"{settings.max_message_chars} (CHORUS_MAX_MESSAGE_CHARS).")
        if webhook is not None:
            why = webhook_allowed(webhook, settings.run_webhook_host_list)
            if why is not None:
                raise RunRefused(400, "webhook_not_allowed", f"The webhook is refused: {why}. It was not called.")
        if thread_id is not None:
            # One unfinished run per conversation. Checked first: a run that has just begun may not have
            # stored its conversation yet, and its user must hear "busy", not "no such conversation"
            # (another user's run on that id still gets the 404 below).
            waiting = await store.unfinished_on_thread(self.engine, thread_id)
            if waiting is not None and await store.get_run(self.engine, waiting, user) is None:
                waiting = None
            if waiting is None:
                # The conversation must be the user's and the team's (the same answers as the API's).
                try:
                    await self.conversations.open(user, spec.name, thread_id)
                except ConversationError as exc:
                    raise RunRefused(exc.status, exc.code, str(exc)) from None
                waiting = await store.unfinished_on_thread(self.engine, thread_id)
            if waiting is not None:
                raise RunRefused(409, "conversation_busy", f"The run {waiting} in this conversation has not finished: "
                                                           "wait for it (or cancel it) before the next one.")
        return await store.create_run(self.engine, user=user, team=spec.name, text=text, thread_id=thread_id,
                                      webhook=webhook, key_id=key_id)

    async def cancel(self, run_id: str, user: str | None) -> Run | None:
        found = await store.get_run(self.engine, run_id, user)
        if found is None:
            return None
        if not found.finished:
            found = await store.request_cancel(self.engine, run_id)
            session = self.sessions.get(run_id)
            if session is not None:
                session.stop()
        return found

    async def execute(self, run_id: str) -> Outcome:
        """Run the run's turn (again, after an interruption: replaying what was finished) and keep
        its result. Cancelled (asyncio) when this process stops: the run stays ``running`` and the
        process that takes it over goes on with it. Any other failure ends the run as ``failed``
        with the reason, so that nobody waits for it."""
        run = await store.start_attempt(self.engine, run_id, self.worker)
        if run is None:
            found = await store.get_run(self.engine, run_id)
            return Outcome(found.status if found else "failed", found.result if found else None,
                           found.error if found else "no such run")
        try:
            return await self._attempt(run)
        except (asyncio.CancelledError, EventsTaken):
            raise
        except Exception as exc:
            log.exception("run %s failed", run_id)
            message = f"the run failed: {exc}" if str(exc) else f"the run failed ({type(exc).__name__})"
            with contextlib.suppress(Exception):
                await store.finish_run(self.engine, run_id, "failed", None, message, attempt=run.attempts)
            return Outcome("failed", None, message)

    async def _attempt(self, run: Run) -> Outcome:
        run_id = run.id
        if run.cancel_requested:
            await store.finish_run(self.engine, run_id, "cancelled", None, "cancelled before it began")
            return Outcome("cancelled", None, "cancelled before it began")
        recovering = run.attempts > 1
        stored = await store.events_after(self.engine, run_id, 0, limit=1_000_000) if recovering else []
        events = EventLog(self.engine, run_id, stored)
        journal = RunJournal(self.engine, run_id, await store.load_calls(self.engine, run_id))
        if recovering:
            log.warning("run %s: attempt %d, replaying %d finished call(s)", run_id, run.attempts,
                        len(journal.calls))
            # The turn records every call again (replayed or new): what an earlier attempt that was
            # stopped (SIGTERM) recorded would count twice.
            await UsageLedger(self.engine).forget_turn(run.turn_id)
        existing = await self.conversations.exists(run.thread_id)
        conversation = await self.conversations.open(
            run.user, run.team, run.thread_id if existing else None, new_id=run.thread_id)
        self.sessions[run_id] = conversation.session
        # A tool that needs approval waits for an answer through the API (POST /api/runs/{id}/approvals/...).
        conversation.session.approvals = Approvals(self.engine, self.chorus.settings.approval_timeout, run_id=run_id)
        watcher = asyncio.create_task(self._watch_cancel(run_id, conversation.session))
        messages: list[dict[str, str]] = []
        notices: list[dict[str, str]] = []
        done: DoneEvent | None = None
        error: ErrorEvent | None = None
        token = current_journal.set(journal)
        try:
            last_flush = asyncio.get_running_loop().time()
            async for event in self.conversations.turn(conversation, run.input, source="run",
                                                       message_id=run.message_id, turn_id=run.turn_id):
                if recovering and isinstance(event, NoticeEvent) and event.code == "rewound":
                    continue  # running the turn again is not the user's edit
                if isinstance(event, MessageEvent) and event.content.strip():
                    messages.append({"agent": event.agent, "content": event.content})
                elif isinstance(event, NoticeEvent):
                    notices.append({"code": event.code, "level": event.level, "text": event.text})
                elif isinstance(event, ErrorEvent):
                    error = event
                elif isinstance(event, DoneEvent):
                    done = event
                events.add(event)
                now = asyncio.get_running_loop().time()
                if not isinstance(event, TokenEvent) or now - last_flush >= FLUSH_S:
                    await events.flush()
                    last_flush = now
            await events.flush()
        except EventsTaken:
            log.warning("run %s: another process is running it now; this attempt stops", run_id)
            conversation.session.stop()
            raise
        finally:
            current_journal.reset(token)
            watcher.cancel()
            self.sessions.pop(run_id, None)
        cancelled = await store.cancel_requested(self.engine, run_id)
        result = self._result(run, messages, notices, done, journal)
        if cancelled:
            status, message = "cancelled", "cancelled while it ran"
        elif error is not None or done is None or done.stop_reason in ("error", "rejected", "budget"):
            status, message = "failed", (error.message if error is not None else "the turn did not finish")
        else:
            status, message = "completed", None
        if not await store.finish_run(self.engine, run_id, status, result, message, attempt=run.attempts):
            log.warning("run %s: a later attempt took it over; this one's result is not kept", run_id)
        return Outcome(status, result, message)

    async def _watch_cancel(self, run_id: str, session: Any) -> None:
        """Stop the run's turn when a cancel is asked for (from any process)."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(CANCEL_POLL_S)
                try:
                    if await store.cancel_requested(self.engine, run_id):
                        session.stop()
                        return
                except Exception as exc:  # a database hiccup: try again at the next poll
                    log.debug("run %s: could not check for a cancel: %s", run_id, exc)

    @staticmethod
    def _result(run: Run, messages: list[dict[str, str]], notices: list[dict[str, str]], done: DoneEvent | None,
                journal: RunJournal) -> dict[str, Any]:
        usage = {"prompt_tokens": done.prompt_tokens if done else 0,
                 "completion_tokens": done.completion_tokens if done else 0,
                 "cost": done.cost if done else 0.0}
        usage["total_tokens"] = int(usage["prompt_tokens"] or 0) + int(usage["completion_tokens"] or 0)
        return {
            "content": "\n\n".join(m["content"] for m in messages),
            "messages": messages,
            "agents": list(done.agents) if done else [],
            "stop_reason": done.stop_reason if done else None,
            "notices": notices,
            "usage": usage,
            "turn_id": run.turn_id,
            "calls_replayed": journal.replayed,
        }
