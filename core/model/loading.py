"""Model loading through TransformerLens 4.x's ``TransformerBridge``.

Every failure becomes a :class:`~core.errors.ModelLoadError` with one sentence that
says what to do; callers never see a Hugging Face stack trace.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import ModelLoadError
from core.model import embedded
from core.model.families import supported
from core.model.tokenizer import model_tokenizer
from core.settings import Settings

logger = logging.getLogger(__name__)

#: Held by every Hugging Face model load in the process, whatever the model. While
#: ``from_pretrained`` builds a model it swaps process-wide functions
#: (``PreTrainedModel.tie_weights``, ``torch.nn.init.*``) and puts them back after; two
#: loads at once put back each other's stand-ins, so tied weights stay on the meta
#: device ("Cannot copy out of meta tensor") for that load and every later one. Loads
#: of different models are therefore not safe in parallel either.
HF_LOAD_LOCK = threading.RLock()


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model: its Hugging Face module and tokenizer, and the bridge around them
    when TransformerLens loaded it.

    Attributes:
        name: the model spec as the user gave it (``"default"``, a hub id or a path).
        source: the resolved hub id or local directory.
        bridge: the TransformerLens bridge (read-only: never mutate a shared one), or
            ``None`` for a plain Hugging Face load (:func:`load_model`).
        hf_model: the Hugging Face causal LM (wrapped by ``bridge`` when there is one),
            in eval mode.
        tokenizer: the model's tokenizer, set up as the bridge sets it up.
    """

    name: str
    source: str
    bridge: Any
    hf_model: Any
    tokenizer: Any


def resolve_model(spec: str) -> str:
    """Map a user's model spec to what Hugging Face loads: a directory or a hub id.

    A name of :mod:`core.model.embedded` (``default`` and ``demo-gpt2`` are the demo
    model, ``smollm2-135m`` the SmolLM2 build) is its directory; an existing directory
    is used as is; anything else is taken as a hub id.
    """
    if embedded.lookup(spec) is not None:
        return str(embedded.directory(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is not a Hugging Face checkpoint directory (it has no config.json); "
                "point --model at the folder that holds config.json and the weights."
            )
        return str(path.resolve())
    if spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"No directory {spec}; check the path or give a Hugging Face id.")
    return split_revision(spec)[0]


def split_revision(spec: str) -> tuple[str, str | None]:
    """``("EleutherAI/pythia-160m", "step3000")`` for ``"EleutherAI/pythia-160m@step3000"``;
    ``(spec, None)`` when the spec names no revision (or is a local path).

    The full spec (revision included) stays the model's name, and so part of its cache
    key: two revisions never share an entry.
    """
    if "@" not in spec or Path(spec).expanduser().exists() or embedded.lookup(spec) is not None:
        return spec, None
    repo, _, revision = spec.rpartition("@")
    if not repo or not revision:
        raise ModelLoadError(
            f"{spec!r} has an empty name or revision; write it as org/name@revision "
            "(a branch, tag or commit, e.g. EleutherAI/pythia-160m@step3000)."
        )
    return repo, revision


def locate_model(spec: str) -> str:
    """The directory (or, when the hub is reachable, the hub id) that ``spec`` loads from:
    :func:`resolve_model`, then a hub id's complete local snapshot where there is one.

    Raises:
        ModelLoadError: no such directory, or a hub id neither cached nor reachable.
    """
    source = resolve_model(spec)
    return source if Path(source).is_dir() else _local_snapshot(source, split_revision(spec)[1])


def load_model(settings: Settings, bridge: bool = False) -> LoadedModel:
    """Load ``settings.model`` on ``settings.torch_device()`` in float32.

    A local checkpoint of a model type whose weights :mod:`core.model.streamed` reads
    (:data:`~core.model.streamed.MATCHED_MODEL_TYPES`) is loaded as a plain Hugging Face
    model, as the bridge loads it (eager attention, float32, its tokenizer set up by
    :func:`~core.model.tokenizer.model_tokenizer`; the tests hold the logits and token ids
    equal): a forward pass needs no more, and importing and booting TransformerLens cost
    2-3 s of the first prompt's answer on SmolLM2-135M. Anything else, or ``bridge``, is
    booted through TransformerLens's ``TransformerBridge``.

    Raises:
        ModelLoadError: the model is missing, the hub is unreachable, or the
            architecture is not supported; the message says what to do.
    """
    from safetensors import SafetensorError

    source = locate_model(settings.model)
    # A local snapshot is already the revision's files; a hub id is asked for it.
    revision = None if Path(source).is_dir() else split_revision(settings.model)[1]
    device = settings.torch_device()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        with HF_LOAD_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not bridge and plain_loadable(source):
                hf_model = _load_plain(source, device)
                tokenizer = model_tokenizer(source)
                booted = None
            else:
                booted = _boot(source, device, revision)
                hf_model, tokenizer = booted.original_model, booted.tokenizer
    except ModelLoadError:
        raise
    except (OSError, SafetensorError) as exc:  # a damaged weights file is unreadable too
        logger.debug("load failed", exc_info=exc)
        if Path(source).is_dir():
            raise ModelLoadError(
                f"Could not read the checkpoint in {source} ({_first_line(exc)}); "
                "check that it holds config.json, the weights and a tokenizer."
            ) from exc
        raise ModelLoadError(
            f"Could not load {source!r}: it is not a local directory and its weights are not "
            "in the local Hugging Face cache, and the hub is unreachable; download it where "
            "there is network (`hf download "
            f"{source}`) and pass that directory to --model."
        ) from exc
    except (ValueError, KeyError, NotImplementedError) as exc:
        logger.debug("load failed", exc_info=exc)
        raise ModelLoadError(
            f"Could not load {source!r} ({_first_line(exc)}); use a causal language model "
            f"that TransformerLens supports ({supported()}) with a tokenizer."
        ) from exc
    hf_model.eval()
    if tokenizer is None:
        raise ModelLoadError(
            f"{source} has no tokenizer; save one beside the weights (tokenizer.json)."
        )
    return LoadedModel(
        name=settings.model,
        source=source,
        bridge=booted,
        hf_model=hf_model,
        tokenizer=tokenizer,
    )


def plain_loadable(source: str) -> bool:
    """Whether ``source`` is a local checkpoint that :func:`load_model` loads without
    TransformerLens: its ``config.json`` names one of
    :data:`~core.model.streamed.MATCHED_MODEL_TYPES`.
    """
    from core.model.streamed import MATCHED_MODEL_TYPES

    try:
        config = json.loads((Path(source) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") in MATCHED_MODEL_TYPES


def _load_plain(source: str, device: str) -> Any:
    """The causal LM in ``source`` as ``TransformerBridge.boot_transformers`` loads it
    for these model types: eager attention (the bridge's choice, so logits match to the
    bit), float32.
    """
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch.float32, attn_implementation="eager", trust_remote_code=False
    )
    # mypy reads transformers' `.to` wrapper as taking the model, not a device.
    return model.to(device)


def _boot(source: str, device: str, revision: str | None) -> Any:
    """The model booted through TransformerLens's bridge."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(
        source,
        device=device,
        dtype=torch.float32,
        trust_remote_code=False,
        revision=revision,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _local_snapshot(repo_id: str, revision: str | None = None) -> str:
    """The local cache directory of ``repo_id`` if it is complete there, else the id.

    When the model is not cached and the hub cannot be reached, fail at once instead of
    letting the hub client retry for half a minute.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except HFValidationError as exc:
        raise ModelLoadError(
            f"{repo_id!r} is neither a local directory nor a valid Hugging Face id; "
            "check the spelling or the path."
        ) from exc
    except Exception:  # not cached: fall through to the hub
        pass
    if constants.HF_HUB_OFFLINE or not _reachable(constants.ENDPOINT):
        rev = f" --revision {revision}" if revision else ""
        raise ModelLoadError(
            f"Could not load {repo_id!r}: it is not a local directory, it is not in the local "
            "Hugging Face cache, and the hub is unreachable; download it where there is "
            f"network (`hf download {repo_id}{rev}`) and pass that directory to --model."
        )
    return repo_id


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
