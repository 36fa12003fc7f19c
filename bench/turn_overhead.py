"""Turn overhead: a bare AutoGen ``run_stream`` against a full Chorus turn, same team, same model.

    python3 -m uv run python bench/turn_overhead.py [--turns 200] [--history 10,200] [--samples 5]

The team is two streaming AssistantAgents in a round robin (each answers once per turn) on the
zero-latency scripted model, so what is measured is the machinery, not a model. First a table of
``--turns`` consecutive turns per configuration (0 skips it):

- ``bare``: AutoGen's ``team.run_stream()`` on the team Chorus builds, consumed to the end;
- ``chorus``: ``run_turn`` on the same team, adding Chorus's events and checks;
- ``+ store``: with the SQLite checkpoint after every turn and the cost ledger;
- ``+ tracing``: with an MLflow trace per turn (written by the background thread);
- ``+ memory``: with the user's memory recalled before each model call (full Chorus).

Each line prints p50/p95 and the ratio of its p50 to bare's. The trace export happens off the
turn's path, so ``+ tracing`` shows what it costs the turn itself (the background thread still
competes for the CPU; the line after the table says how long the exports took).

Then the cost of one turn as the conversation grows: the same turn when the team already holds
10 and 200 messages of history (``--history``), for a bare AutoGen team and for full Chorus (the
SQLite store, tracing and memory on). Each of ``--samples`` conversations is grown to that length
untimed (without tracing, to keep the run short), then its next 3 turns are timed, each after the
previous turn's trace was written (as between a user's messages) and a garbage collection. It prints the medians, their
ratio 200/10 for each, and Chorus / bare at each length; the Python function calls of one
more turn on the turn's thread (cProfile: a count, which other load on the machine does not
change, where timings on a shared machine vary by 2x); then the bytes one turn sends to the
database (every statement's parameters: checkpoint, turn state, ledger) and the bytes the
checkpoint tables hold for the conversation afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from autogen_agentchat.messages import BaseChatMessage, TextMessage  # noqa: E402

from chorus.models import scripted_model  # noqa: E402
from chorus.settings import Settings  # noqa: E402
from chorus.store import make_engine, upgrade  # noqa: E402
from chorus.store.checkpoints import CheckpointStore  # noqa: E402
from chorus.store.db import database_url  # noqa: E402
from chorus.store.usage import UsageLedger  # noqa: E402
from chorus.teams import TeamCatalog, TeamSpec  # noqa: E402
from chorus.tracing import Tracer  # noqa: E402
from chorus.turn import Chorus, run_turn  # noqa: E402

TEAM = TeamSpec(name="pair", type="round_robin", members=["assistant", "guide"], default=True)
REPLY = "A reply of about twenty words, so that streaming has a few chunks to carry to the page, like a short answer."


def make_chorus(home: Path, *, tracing: bool, memory: bool) -> Chorus:
    settings = Settings(model="scripted", home=home, plugins="assistant,guide", offline_token_delay=0,
                        tracing=tracing, memory=memory, knowledge_dir=home / "no-knowledge")
    base = Chorus.load(settings)
    tracer = Tracer(settings, "bench") if tracing else None
    if tracer is not None:
        tracer.prepare()
    if base.memory is not None:
        base.memory.prepare_sync()
    return Chorus(settings=settings, registry=base.registry, catalog=TeamCatalog(teams={"pair": TEAM}),
                  memory=base.memory, tracer=tracer)


async def measure(turn: Callable[[int], Awaitable[None]], turns: int) -> list[float]:
    for i in range(5):  # warm-up
        await turn(-i - 1)
    times = []
    for i in range(turns):
        started = time.perf_counter()
        await turn(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def main(turns: int, history: list[int], samples: int) -> None:
    scripted_model.default = REPLY
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        if turns:
            await table(Path(tmp) / "table", turns)
        if history:
            await growth(Path(tmp) / "growth", history, samples)


async def table(home: Path, turns: int) -> None:
    results: dict[str, list[float]] = {}

    plain = make_chorus(home / "plain", tracing=False, memory=False)
    bare_session = plain.open_session()
    team = bare_session.built.team if bare_session.built else None
    assert team is not None

    async def bare(i: int) -> None:
        async for _ in team.run_stream(task=TextMessage(content=f"question {i}", source="user")):
            pass

    results["bare AutoGen run_stream"] = await measure(bare, turns)

    chorus_session = plain.open_session()

    async def chorus_turn(i: int) -> None:
        async for _ in run_turn(chorus_session, f"question {i}"):
            pass

    results["chorus run_turn"] = await measure(chorus_turn, turns)

    url = database_url(Settings(home=home / "db"))
    upgrade(url)
    engine = make_engine(url)
    stored = plain.open_session(user_id="bench", checkpoints=CheckpointStore(engine), ledger=UsageLedger(engine))

    async def stored_turn(i: int) -> None:
        async for _ in run_turn(stored, f"question {i}", message_id=f"m{i}"):
            pass

    results["+ store (checkpoint, ledger)"] = await measure(stored_turn, turns)

    traced = make_chorus(home / "traced", tracing=True, memory=False)
    assert traced.tracer is not None
    traced.tracer.flush(60)
    traced_session = traced.open_session(user_id="bench", checkpoints=CheckpointStore(engine),
                                         ledger=UsageLedger(engine))

    async def traced_turn(i: int) -> None:
        async for _ in run_turn(traced_session, f"question {i}", message_id=f"t{i}"):
            pass

    results["+ tracing (MLflow)"] = await measure(traced_turn, turns)
    started = time.perf_counter()
    traced.tracer.flush(600)
    export_s = time.perf_counter() - started

    full = make_chorus(home / "full", tracing=True, memory=True)
    assert full.memory is not None and full.tracer is not None
    user_memory = full.memory.for_user("bench")
    assert user_memory is not None
    user_memory.remember_sync("The user likes short answers.")
    full_session = full.open_session(user_id="bench", checkpoints=CheckpointStore(engine),
                                     ledger=UsageLedger(engine))

    async def full_turn(i: int) -> None:
        async for _ in run_turn(full_session, f"question {i}", message_id=f"f{i}"):
            pass

    results["+ memory (full Chorus)"] = await measure(full_turn, turns)
    full.tracer.flush(600)
    await engine.dispose()

    bare_p50 = statistics.median(results["bare AutoGen run_stream"])
    print(f"Turn overhead, {turns} turns each, 2-agent round robin on the zero-latency scripted model")
    print(f"{'configuration':<32} {'p50 ms':>8} {'p95 ms':>8} {'× bare':>7}")
    for name, times in results.items():
        times.sort()
        p50 = statistics.median(times)
        p95 = times[int(len(times) * 0.95) - 1]
        print(f"{name:<32} {p50:>8.2f} {p95:>8.2f} {p50 / bare_p50:>7.2f}")
    print(f"(the {turns} traces of '+ tracing' took {export_s:.1f} s more to write in the background)")


TIMED = 3  # turns timed per grown conversation


async def growth(home: Path, lengths: list[int], samples: int) -> None:
    """One turn at each history length: bare AutoGen against full Chorus."""
    plain = make_chorus(home / "plain", tracing=False, memory=False)
    full = make_chorus(home / "full", tracing=True, memory=True)
    assert full.memory is not None and full.tracer is not None
    tracer = full.tracer
    untraced = dataclasses.replace(full, tracer=None)  # grows conversations without writing traces
    user_memory = full.memory.for_user("bench")
    assert user_memory is not None
    user_memory.remember_sync("The user likes short answers.")
    url = database_url(Settings(home=home / "db"))
    upgrade(url)
    engine = make_engine(url)
    store, ledger = CheckpointStore(engine), UsageLedger(engine)
    sent = [0]  # bytes of the parameters of every SQL statement (what is written to the database)
    sa.event.listen(engine.sync_engine, "before_cursor_execute",
                    lambda conn, cursor, sql, params, context, many: sent.__setitem__(0, sent[0] + _size(params)))

    async def bare(n: int) -> tuple[list[tuple[float, float]], int]:
        session = plain.open_session()
        team = session.built.team if session.built else None
        assert team is not None
        held = count = 0
        while held < n:
            held += await bare_turn(team, f"question {count}")
            count += 1
        times = []
        for _ in range(TIMED):
            gc.collect()  # no collection owed by the untimed turns before
            started, cpu = time.perf_counter(), time.process_time()
            await bare_turn(team, f"question {count}")
            times.append(((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000))
            count += 1
        return times, await calls(lambda: bare_turn(team, f"question {count}"))

    async def chorus(n: int, thread: str) -> tuple[list[tuple[float, float]], int, int, int]:
        chat = full.open_session(user_id="bench", thread_id=thread, checkpoints=store, ledger=ledger)
        chat.chorus = untraced
        held = count = 0
        while held < n:
            held += await chorus_turn(chat, f"question {count}", f"{thread}-m{count}")
            count += 1
        chat.chorus = full
        times = []
        written = 0
        for _ in range(TIMED):
            tracer.flush(600)
            gc.collect()
            sent[0] = 0
            started, cpu = time.perf_counter(), time.process_time()
            await chorus_turn(chat, f"question {count}", f"{thread}-m{count}")
            times.append(((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000))
            written += sent[0]
            count += 1
        total = await stored_bytes(engine, thread)
        tracer.flush(600)
        called = await calls(lambda: chorus_turn(chat, f"question {count}", f"{thread}-m{count}"))
        return times, written // TIMED, total, called

    bare_ms: dict[int, list[tuple[float, float]]] = {n: [] for n in lengths}
    chorus_ms: dict[int, list[tuple[float, float]]] = {n: [] for n in lengths}
    written: dict[int, list[int]] = {n: [] for n in lengths}
    held: dict[int, list[int]] = {n: [] for n in lengths}
    bare_calls: dict[int, list[int]] = {n: [] for n in lengths}
    chorus_calls: dict[int, list[int]] = {n: [] for n in lengths}
    try:
        await bare(lengths[0])  # warm-up
        await chorus(lengths[0], "warm-up")
        for sample in range(samples):
            # Interleaved, so that a slow spell of the machine hits every length; in turn first and last.
            for n in lengths if sample % 2 == 0 else lengths[::-1]:
                times, called = await bare(n)
                bare_ms[n] += times
                bare_calls[n].append(called)
                times, per_turn, total, called = await chorus(n, f"grow-{n}-{sample}")
                chorus_ms[n] += times
                chorus_calls[n].append(called)
                written[n].append(per_turn)
                held[n].append(total)
        tracer.flush(600)
    finally:
        await engine.dispose()

    print()
    print(f"One turn as the conversation grows: median of {samples} conversations x {TIMED} turns, "
          "same 2-agent round robin and scripted model")
    print(f"{'configuration':<44}" + "".join(f" {f'{n} msgs':>10}" for n in lengths)
          + (f" {f'{lengths[-1]}/{lengths[0]}':>8}" if len(lengths) > 1 else ""))

    def row(name: str, values: dict[int, list[float]], unit: float = 1, ratio: bool = True) -> None:
        medians = [statistics.median(values[n]) / unit for n in lengths]
        line = f"{name:<44}" + "".join(f" {m:>10.2f}" for m in medians)
        if ratio and len(lengths) > 1:
            line += f" {medians[-1] / medians[0]:>8.2f}"
        print(line)

    for clock, index in (("wall", 0), ("CPU", 1)):
        bare_t = {n: [t[index] for t in bare_ms[n]] for n in lengths}
        chorus_t = {n: [t[index] for t in chorus_ms[n]] for n in lengths}
        row(f"bare AutoGen run_stream, ms {clock}", bare_t)
        row(f"full Chorus (store, tracing, memory), ms {clock}", chorus_t)
        row(f"  Chorus / bare ({clock})", {n: [statistics.median(chorus_t[n]) / statistics.median(bare_t[n])]
                                         for n in lengths}, ratio=False)
    row("bare AutoGen: Python calls per turn, 1000s", {n: [float(v) for v in bare_calls[n]] for n in lengths}, 1000)
    row("full Chorus: Python calls per turn, 1000s", {n: [float(v) for v in chorus_calls[n]] for n in lengths}, 1000)
    row("Chorus: KB written to the database per turn", {n: [float(v) for v in written[n]] for n in lengths}, 1024)
    row("Chorus: KB in the checkpoint tables, thread", {n: [float(v) for v in held[n]] for n in lengths}, 1024)
    print("(wall: elapsed time; CPU: this process's CPU time, all its threads: less sensitive to other load;\n"
          " calls: function calls on the turn's thread in one more turn under cProfile, which load does not change)")


async def calls(turn: Callable[[], Awaitable[object]]) -> int:
    """How many Python function calls ``turn`` makes on this thread (a measure that load does not change)."""
    gc.collect()
    profile = cProfile.Profile()
    profile.enable()
    try:
        await turn()
    finally:
        profile.disable()
    return int(pstats.Stats(profile).total_calls)  # type: ignore[attr-defined]


def _size(params: object) -> int:
    """Bytes of the text and binary values in a statement's parameters."""
    if isinstance(params, str):
        return len(params.encode())
    if isinstance(params, (bytes, bytearray, memoryview)):
        return len(params)
    if isinstance(params, dict):
        return sum(_size(v) for v in params.values())
    if isinstance(params, (list, tuple)):
        return sum(_size(v) for v in params)
    return 0


async def bare_turn(team: object, text: str) -> int:
    """One bare AutoGen turn; the number of messages it added to the team's history (the user's too)."""
    messages = 0
    async for item in team.run_stream(task=TextMessage(content=text, source="user")):  # type: ignore[attr-defined]
        if isinstance(item, BaseChatMessage):
            messages += 1
    return messages


async def chorus_turn(session: object, text: str, message_id: str) -> int:
    """One Chorus turn; the number of messages it added to the team's history (the user's too)."""
    messages = 0
    async for event in run_turn(session, text, message_id=message_id):  # type: ignore[arg-type]
        if event.type == "done":
            messages = 1 + event.messages  # type: ignore[attr-defined]
    return messages


async def stored_bytes(engine: object, thread_id: str) -> float:
    """What the checkpoint tables hold for ``thread_id``, in bytes of their JSON columns."""
    from chorus.store import schema

    total = 0.0
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        for table in checkpoint_tables(schema):
            columns = [c for c in table.c if isinstance(c.type, (sa.JSON, sa.Text, sa.LargeBinary))]
            query = sa.select(*[sa.func.coalesce(sa.func.sum(sa.func.length(sa.cast(c, sa.Text))), 0)
                                for c in columns]).where(table.c.thread_id == thread_id)
            total += sum((await conn.execute(query)).one())
    return total


def checkpoint_tables(schema: object) -> list[sa.Table]:
    return [t for t in schema.metadata.sorted_tables  # type: ignore[attr-defined]
            if t.name.startswith(("chorus_checkpoint", "chorus_turn_state"))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200, help="turns per configuration of the table (0: none)")
    parser.add_argument("--history", default="10,200", help="history lengths, in messages ('' for none)")
    parser.add_argument("--samples", type=int, default=5, help="conversations grown per history length")
    args = parser.parse_args()
    asyncio.run(main(args.turns, [int(n) for n in args.history.split(",") if n.strip()], args.samples))
