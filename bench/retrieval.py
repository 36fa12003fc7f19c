"""Retrieval benchmark: embedding throughput, ingestion rate, and query latency at 10k and 100k chunks.

    python3 -m uv run python bench/retrieval.py            # about 5 minutes on 2 cores
    python3 -m uv run python bench/retrieval.py --quick    # smaller sizes, for a smoke run

What it measures, on a throwaway store in a temporary directory:

1. Embedding throughput of Chorus's offline all-MiniLM-L6-v2 (numpy), for short texts (a chat
   message, ~15 tokens) and for knowledge chunks as ``chorus ingest`` makes them (~900
   characters, ~200 tokens).
2. Ingestion rate end to end (read, chunk, embed, write to Chroma) with ``chorus ingest``'s own
   code on generated Markdown documents.
3. Query latency p50/p95 at 10k and 100k chunks, *query embedding included*, as an agent's
   ``search_knowledge`` call pays it. Embedding 100k chunks would take hours on 2 cores, so the
   large collections are filled with real embeddings of a few thousand distinct chunks, each
   reused with a small random perturbation (re-normalised): the index sees 100k distinct
   vectors with a realistic distribution, and the figure measured is the search, not the fill.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chorus.memory.embeddings import minilm  # noqa: E402
from chorus.memory.knowledge import KnowledgeBase  # noqa: E402
from chorus.memory.store import VectorStore  # noqa: E402
from chorus.settings import Settings  # noqa: E402

WORDS = ("album artist track genre rock jazz blues invoice refund shipping download customer store policy "
         "price payment card gift support hour email account privacy delivery format quality playlist "
         "release label song singer guitar piano drums concert tour vinyl digital order history").split()
QUESTIONS = ["How long do refunds take?", "Which formats can I download?", "Can I pay with a gift card?",
             "What are the support hours?", "Do you sell vinyl records?", "How do I change my email address?",
             "Why was I charged twice?", "Which albums does the artist have?"]


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, chars: int) -> str:
    out = ""
    while len(out) < chars:
        out += sentence(rng, rng.randint(8, 16)) + " "
    return out[:chars].rsplit(" ", 1)[0] + "."


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.1f}/s"


def bench_embedding(rng: random.Random, n: int) -> None:
    model = minilm()
    model.embed(["warm up"])
    short = [sentence(rng, 10) for _ in range(n)]
    chunks = [paragraph(rng, 900) for _ in range(max(n // 4, 32))]
    started = time.perf_counter()
    model.embed(short)
    short_s = time.perf_counter() - started
    started = time.perf_counter()
    model.embed(chunks)
    chunk_s = time.perf_counter() - started
    tokens = sum(len(model.tokenizer.encode(c).ids) for c in chunks)
    print(f"embedding, short texts (~15 tokens):   {len(short):>7,} in {short_s:6.2f} s  {rate(len(short), short_s)}")
    print(f"embedding, 900-char chunks (~{tokens // len(chunks)} tok): {len(chunks):>7,} in {chunk_s:6.2f} s  "
          f"{rate(len(chunks), chunk_s)}  ({rate(tokens, chunk_s)} tokens)")


def bench_ingest(rng: random.Random, home: Path, documents: int) -> None:
    docs = home / "docs"
    docs.mkdir()
    for i in range(documents):
        sections = "\n\n".join(f"## {sentence(rng, 3)}\n\n{paragraph(rng, 700)}\n\n{paragraph(rng, 500)}"
                               for _ in range(3))
        (docs / f"doc-{i:04d}.md").write_text(f"# Document {i}\n\n{sections}\n", encoding="utf-8")
    store = VectorStore(Settings(home=home / "ingest"))
    kb = KnowledgeBase(store)
    started = time.perf_counter()
    report = kb.ingest_sync([docs])
    seconds = time.perf_counter() - started
    print(f"ingestion (read+chunk+embed+write):   {report.chunks:>7,} chunks in {seconds:6.2f} s  "
          f"{rate(report.chunks, seconds)}")
    started = time.perf_counter()
    again = kb.ingest_sync([docs])
    seconds = time.perf_counter() - started
    print(f"re-ingesting the unchanged files:     {len(again.unchanged):>7,} files  in {seconds:6.2f} s"
          f"  ({again.chunks} chunks written)")
    store.close()


def bench_queries(rng: random.Random, home: Path, sizes: list[int], distinct: int, queries: int) -> None:
    model = minilm()
    base_texts = [paragraph(rng, 600) for _ in range(distinct)]
    started = time.perf_counter()
    base = model.embed(base_texts)
    print(f"(embedded {distinct:,} distinct chunks for the fill in {time.perf_counter() - started:.1f} s)")
    store = VectorStore(Settings(home=home / "query"))
    collection = store.collection("bench")
    noise = np.random.default_rng(7)
    filled = 0
    for size in sizes:
        started = time.perf_counter()
        before = filled
        while filled < size:
            n = min(5000, size - filled)
            picks = noise.integers(0, distinct, n)
            vectors = base[picks] + noise.normal(0, 0.02, (n, base.shape[1])).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            collection.add(ids=[f"c{filled + i}" for i in range(n)], embeddings=vectors,
                           documents=[base_texts[p] for p in picks])
            filled += n
        fill_s = time.perf_counter() - started
        latencies = []
        for i in range(queries):
            started = time.perf_counter()
            collection.query(query_texts=[QUESTIONS[i % len(QUESTIONS)] + f" ({i})"], n_results=4)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(f"query at {size:>7,} chunks (embedding included): p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
              f"({queries} queries; vectors written at {rate(filled - before, fill_s)})")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    rng = random.Random(42)
    sizes = [2_000, 10_000] if args.quick else [10_000, 100_000]
    print(f"Chorus retrieval benchmark ({'quick' if args.quick else 'full'}); numpy {np.__version__}")
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        home = Path(tmp)
        bench_embedding(rng, 256 if args.quick else 1024)
        bench_ingest(rng, home, 10 if args.quick else 40)
        bench_queries(rng, home, sizes, 500 if args.quick else 2_000, 50 if args.quick else 200)


if __name__ == "__main__":
    main()
