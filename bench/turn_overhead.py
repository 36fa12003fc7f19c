"""Turn overhead: a bare AutoGen ``run_stream`` against a full Chorus turn, same team, same model.

    python3 -m uv run python bench/turn_overhead.py [--turns 200]

The team is two streaming AssistantAgents in a round robin (each answers once per turn) on the
zero-latency scripted model, so what is measured is the machinery, not a model. In one run:

- ``bare``: AutoGen's ``team.run_stream()`` on the team Chorus builds, consumed to the end;
- ``chorus``: ``run_turn`` on the same team, adding Chorus's events and checks;
- ``+ store``: with the SQLite checkpoint after every turn and the cost ledger;
- ``+ tracing``: with an MLflow trace per turn (written by the background thread);
- ``+ memory``: with the user's memory recalled before each model call (full Chorus).

Each line prints p50/p95 and the ratio of its p50 to bare's. The trace export happens off the
turn's path, so ``+ tracing`` shows what it costs the turn itself (the background thread still
competes for the CPU; the line after the table says how long the exports took).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autogen_agentchat.messages import TextMessage  # noqa: E402

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


async def main(turns: int) -> None:
    scripted_model.default = REPLY
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        home = Path(tmp)

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200)
    asyncio.run(main(parser.parse_args().turns))
