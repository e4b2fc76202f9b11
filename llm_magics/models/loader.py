"""Loading base models, tokenizers and adapters (safetensors only) into a model cache, so that
predictions and checkpoint switches do not reload a base model's weights."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.config.refs import is_checkpoint_uri, parse_checkpoint_uri
from llm_magics.core.devices import cuda_bf16, default_device_map
from llm_magics.core.errors import ConfigError, ModelError, did_you_mean, one_of
from llm_magics.core.secrets import without_masked
from llm_magics.models import hub
from llm_magics.store.artifacts import check_adapter

if TYPE_CHECKING:
    from llm_magics.core.cache import ModelCache
    from llm_magics.store.database import DatabaseHandle

_DTYPES = ("auto", "float32", "float16", "bfloat16")
_TASKS = {"causal-lm": "AutoModelForCausalLM", "text-classification": "AutoModelForSequenceClassification"}


@dataclass
class BaseModel:
    """A base model and how it is loaded; ``key`` tells two loads of the same thing apart."""

    path: str
    bits: int | None = None
    task: str = "causal-lm"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        parts = [self.path, self.bits, self.task, self.model_kwargs, self.tokenizer_kwargs, self.labels]
        return json.dumps(parts, sort_keys=True, default=repr)


def quiet_libraries() -> None:
    """Silences import-time chatter that says nothing to a notebook user."""
    # peft still asks models for the pre-v5 attribute names
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning)
    # 8-bit layers log a warning on every matmul whose input is not float16 (every one, on a CPU)
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def check_model_path(path: str | None) -> str:
    """Checks that a base model exists locally, or names a Hub model; returns the path."""
    if not path:
        raise ConfigError("model: name the base model (a local directory or a model name)")
    local = Path(path).expanduser()
    looks_local = local.exists() or path.startswith((".", "/", "~")) or path.count("/") > 1
    if looks_local:
        if not local.is_dir():
            raise ModelError(f"model: no directory '{path}' — give a model directory or a model name")
        if not (local / "config.json").is_file():
            raise ModelError(f"model: '{path}' has no config.json, so it is not a saved model")
        return str(local.resolve())
    problem = hub.unavailable(path)
    if problem:
        raise ModelError(problem)
    return path


def load_tokenizer(path: str, tokenizer_kwargs: dict[str, Any] | None = None) -> Any:
    from transformers import AutoTokenizer

    quiet_libraries()
    if not Path(path).expanduser().is_dir() and (problem := hub.unavailable(path)):
        raise ModelError(problem)  # in seconds, not after the Hub's retries
    kwargs = {"trust_remote_code": False, **without_masked(tokenizer_kwargs or {})}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as error:
        raise ModelError(_unreachable(path, error)) from None
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise ModelError(_remote_code_refused(path)) from None
        reason = str(error).strip().splitlines()[0]
        raise ModelError(f"model '{path}': its tokenizer cannot be loaded ({reason})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(base: BaseModel, *, device_map: Any = None) -> Any:
    """Loads the base model (a transformers model), quantized when ``base.bits`` is set, from
    safetensors only."""
    quiet_libraries()
    kwargs = {"trust_remote_code": False, **without_masked(base.model_kwargs)}
    kwargs["dtype"] = _dtype(kwargs.pop("dtype", kwargs.pop("torch_dtype", None)))
    kwargs.setdefault("device_map", device_map if device_map is not None else default_device_map())
    if base.bits is not None:
        kwargs["quantization_config"] = quantization_config(base.bits)
    if base.labels:
        kwargs.update(
            num_labels=len(base.labels),
            id2label=dict(enumerate(base.labels)),
            label2id={label: i for i, label in enumerate(base.labels)},
        )
    try:
        return auto_class(base.task).from_pretrained(base.path, use_safetensors=True, **kwargs)
    except OSError as error:
        if "safetensors" in str(error) or any(Path(base.path).glob("*.bin")):
            raise ModelError(
                f"model '{base.path}' has no safetensors weights; pickle files (.bin) are not loaded "
                "because they can run code — convert it with save_pretrained(safe_serialization=True)"
            ) from None
        raise ModelError(_unreachable(base.path, error)) from None
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise ModelError(_remote_code_refused(base.path)) from None


def _remote_code_refused(path: str) -> str:
    return (
        f"model '{path}' comes with its own Python code (auto_map in its config.json), which is not run "
        "unless allowed — set trust_remote_code: true only if you trust that code"
    )


def meta_model(base: BaseModel) -> Any:
    """The base model's modules without weights (PyTorch's meta device): instant at any size."""
    import torch
    from transformers import AutoConfig

    remote = bool(base.model_kwargs.get("trust_remote_code", False))
    try:
        model_config = AutoConfig.from_pretrained(base.path, trust_remote_code=remote)
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise ModelError(_remote_code_refused(base.path)) from None
    if base.labels:
        model_config.num_labels = len(base.labels)
    with torch.device("meta"):
        return auto_class(base.task).from_config(model_config, trust_remote_code=remote)


def check_target_modules(base: BaseModel, targets: list[str]) -> None:
    """Each LoRA target names a module of the model, matched as peft matches it (a name's end)."""
    import torch

    modules = dict(meta_model(base).named_modules())
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in modules)]
    if not missing:
        return
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if isinstance(m, torch.nn.Linear)})
    hint = did_you_mean(missing[0], linear) or f"; its linear layers: {', '.join(linear)}"
    raise ConfigError(f"lora_target_modules: the model has no module {one_of(missing)}{hint}")


def auto_class(task: str) -> Any:
    """The transformers Auto class of a task."""
    import transformers

    return getattr(transformers, _TASKS[task])


def quantization_config(bits: int) -> Any:
    import torch

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError(f"bits: {bits}-bit loading needs bitsandbytes — pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if cuda_bf16() else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def _dtype(name: Any) -> Any:
    import torch

    if name is None:
        return torch.bfloat16 if cuda_bf16() else torch.float32
    if isinstance(name, torch.dtype) or name == "auto":
        return name
    name = str(name).removeprefix("torch.")
    if name not in _DTYPES:
        raise ConfigError(f"model_kwargs.dtype: must be {one_of(_DTYPES)}, got {name!r}")
    return getattr(torch, name)


def _unreachable(path: str, error: Exception) -> str:
    reason = str(error).strip().splitlines()[0][:160]
    return (
        f"model '{path}': not a local model directory and it could not be downloaded ({reason}) "
        "— give a local path, or check the name and the network"
    )


def resolve_adapter(db: DatabaseHandle | None, adapter_id: str | None) -> str | None:
    """An adapter directory from a path or ``checkpoint://NAME/STEP`` (a checkpoint in ``db``), checked."""
    if adapter_id is None:
        return None
    if is_checkpoint_uri(adapter_id):
        if db is None:
            raise ModelError(f"adapter_id '{adapter_id}': a checkpoint needs the database that holds it")
        model, ref = parse_checkpoint_uri(adapter_id)
        record = db.store.checkpoint(model, ref)
        return str(db.store.local_checkpoint(record, db.downloads))
    return str(check_adapter(Path(adapter_id).expanduser()).resolve())


MAX_ADAPTERS = 8  # adapters kept loaded on one base; the least recently used goes first


@dataclass
class Loaded:
    """A base model in memory, with the adapters loaded onto it by name."""

    model: Any
    tokenizer: Any
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @contextlib.contextmanager
    def using(self, adapter: str | Path | None) -> Iterator[Any]:
        """Holds the model with ``adapter`` active (None: the base alone) while inside."""
        with self.lock:
            if adapter is None:
                if not self.adapters:
                    yield self.model
                    return
                with self.model.disable_adapter():
                    yield self.model
                return
            self._activate(str(check_adapter(adapter)))
            yield self.model

    def _activate(self, path: str) -> None:
        from peft import PeftModel

        name = "a" + hashlib.sha1(path.encode()).hexdigest()[:12]
        if name in self.adapters and self.model.active_adapter == name:
            return  # set_adapter and eval() walk every module: nothing to do for the active one
        if name not in self.adapters:
            if self.adapters:
                self.model.load_adapter(path, adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name, is_trainable=False)
            self.adapters[name] = path
            self.model.eval()  # a new adapter's dropout layers start in training mode
        self.adapters.move_to_end(name)
        self.model.set_adapter(name)
        while len(self.adapters) > MAX_ADAPTERS:  # browsing many checkpoints must not fill the memory
            oldest = next(iter(self.adapters))
            self.model.delete_adapter(oldest)
            del self.adapters[oldest]


def load_cached(cache: ModelCache, base: BaseModel) -> Loaded:
    """The base model with its tokenizer, loaded once per cache (in evaluation mode)."""

    def load() -> Loaded:
        tokenizer = load_tokenizer(base.path, base.tokenizer_kwargs)
        model = load_base_model(base)
        model.eval()
        return Loaded(model, tokenizer)

    return cache.get(base.key, load)
