"""LLMTrainingConfiguration: every trl.SFTConfig field plus the seed's LoRA, data and Ray extras.

The class extends ``trl.SFTConfig`` for its fields and defaults, but its ``__post_init__`` only
validates. ``TrainingArguments.__post_init__`` also sets up the accelerator (device, mixed
precision, DeepSpeed), which must happen on the machine that trains: a Ray worker's GPU is not the
kernel's. ``training_arguments()`` builds the real ``SFTConfig`` there.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from trl import SFTConfig

from llm_magics.errors import ConfigError, did_you_mean, one_of

# Names from the seed (transformers 4) and from the magics' YAML, mapped to our fields.
ALIASES = {
    "evaluation_strategy": "eval_strategy",
    "model_name_or_path": "model",
    "key": "X",
}

# Lower bounds checked before anything trains: field -> smallest valid value.
_AT_LEAST = {
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "lora_r": 1,
    "lora_alpha": 1,
    "max_length": 1,
    "logging_steps": 0,
    "save_steps": 0,
    "eval_steps": 0,
    "num_train_epochs": 0,
    "warmup_steps": 0,
    "weight_decay": 0,
    "save_total_limit": 1,
    "probe_steps": 1,
    "probe_max_new_tokens": 1,
}
_POSITIVE = ("learning_rate",)
_FRACTIONS = ("lora_dropout", "valid_fraction")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(repr=False)
class LLMTrainingConfiguration(SFTConfig):
    """Training configuration: every ``trl.SFTConfig`` / ``TrainingArguments`` field, the seed's
    LoRA extras, and where the model and the data come from.

    Build it from keyword arguments, ``from_dict`` (a cell body) or ``from_yaml``; all three run
    the same validation and raise one ``ConfigError`` naming every problem.
    """

    # --- identity (the seed's) ---
    identifier: str | None = field(default=None, metadata=_help("A name for this configuration."))

    # --- model ---
    model: str | None = field(
        default=None,
        metadata=_help("Base model: a local directory or a model name (alias model_name_or_path)."),
    )
    task: Literal["causal-lm", "text-classification"] = field(
        default="causal-lm", metadata=_help("What the model learns: 'causal-lm' or 'text-classification'.")
    )
    bits: Literal[4, 8] | None = field(
        default=None, metadata=_help("Load the base model quantized to 4 or 8 bits (QLoRA); null: full precision.")
    )
    adapter_id: str | None = field(
        default=None,
        metadata=_help("An existing LoRA adapter to start from: a directory or checkpoint://NAME/STEP."),
    )
    model_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_help("Passed to from_pretrained of the model.")
    )
    tokenizer_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_help("Passed to AutoTokenizer.from_pretrained.")
    )

    # --- LoRA (the seed's extras and defaults) ---
    use_lora: bool = field(default=True, metadata=_help("Train a LoRA adapter; false: full fine-tuning."))
    lora_r: int = field(default=8, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=16, metadata=_help("LoRA alpha (scaling = alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=_help("LoRA dropout."))
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata=_help("Modules that get LoRA layers; null: every linear layer but the output head."),
    )
    lora_bias: Literal["none", "all", "lora_only"] = field(
        default="none", metadata=_help("Which biases train: 'none', 'all' or 'lora_only'.")
    )
    log_to_db: bool = field(
        default=True,
        metadata=_help(
            "Write each logged step's metrics to the database (the seed's). Runs, checkpoints and the "
            "live view always work: the kernel records them, so Ray workers never need the database."
        ),
    )

    # --- data ---
    data: str | None = field(default=None, metadata=_help("The collection that holds the documents."))
    select: dict[str, Any] | str | None = field(
        default=None,
        metadata=_help("A collection name or {collection, filter, projection, limit}; instead of data."),
    )
    X: str = field(default="text", metadata=_help("The field holding each document's text (alias key)."))
    y: str | None = field(default=None, metadata=_help("The label field (text-classification)."))
    prompt: str | None = field(
        default=None, metadata=_help("The prompt field; with response, the loss is on the response only.")
    )
    response: str | None = field(default=None, metadata=_help("The response field (with prompt)."))
    messages: str | None = field(
        default=None,
        metadata=_help("The field holding a chat (a list of {role, content}); uses the chat template."),
    )
    prompt_template: str | None = field(
        default=None,
        metadata=_help("How a prompt is written before its response, with {prompt} in it; stored with checkpoints."),
    )
    valid_fraction: float | None = field(
        default=None,
        metadata=_help(
            "Share of documents held out for evaluation when none has _fold: 'valid'; "
            "null: 0.1 when evaluation is on, else 0."
        ),
    )

    # --- probes ---
    probe_prompts: list[str] | None = field(
        default=None, metadata=_help("Prompts answered at each checkpoint, shown live and stored.")
    )
    probe_steps: int | None = field(
        default=None, metadata=_help("Answer the probe prompts every N steps; null: at each save.")
    )
    probe_max_new_tokens: int = field(default=32, metadata=_help("Length of each probe answer."))

    # --- where it runs and where files go ---
    backend: Literal["kernel", "thread", "ray"] | None = field(
        default=None, metadata=_help("'kernel' (blocking), 'thread' (background) or 'ray'.")
    )
    on_ray: bool = field(default=False, metadata=_help("Train on Ray (the seed's; same as backend: ray)."))
    ray_address: str | None = field(
        default=None, metadata=_help("Ray cluster address, e.g. ray://host:10001; null: a local Ray.")
    )
    ray_configs: dict[str, Any] | None = field(
        default=None,
        metadata=_help("Passed to Ray Train's TorchTrainer: scaling_config, run_config and the rest."),
    )
    artifacts: Literal["local", "db"] = field(
        default="local",
        metadata=_help("Where checkpoint files live: 'local' disk, or 'db' (GridFS) for other machines."),
    )
    upload_optimizer_state: bool = field(
        default=False,
        metadata=_help("With artifacts: db, store optimizer state too, so another machine can resume."),
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help("Accepted from transformers 4 scripts; each run writes its own directory."),
    )

    # --- SFTConfig fields whose defaults suit quick notebook experiments better ---
    output_dir: str | None = field(
        default=None,
        metadata=_help("Where checkpoints go (one sub-directory per run); null: .llm_magics/artifacts/NAME."),
    )
    max_length: int | None = field(default=512, metadata=_help("Maximum tokens per example."))
    learning_rate: float = field(default=2e-4, metadata=_help("Initial learning rate (LoRA-sized)."))
    logging_steps: float = field(default=1, metadata=_help("Log every N steps (feeds the live loss curve)."))
    bf16: bool | None = field(
        default=None, metadata=_help("bfloat16 mixed precision; null: on where the GPU supports it.")
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata=_help("Recompute activations to save memory (slower).")
    )

    def __post_init__(self):
        # Validation only; see the module docstring for why TrainingArguments' own runs later.
        problems = _value_problems(self)
        if problems:
            raise ConfigError(problems)
        for name in _enum_fields():
            value = getattr(self, name)
            if isinstance(value, enum.Enum):
                setattr(self, name, value.value)

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.changes().items())
        return f"{type(self).__name__}({shown})"

    def __str__(self) -> str:  # TrainingArguments' own lists every field, kwargs and URIs unmasked
        return repr(self)

    @classmethod
    def from_dict(cls, mapping: dict[str, Any]) -> LLMTrainingConfiguration:
        """Builds a configuration from a mapping (a YAML cell body, a stored run)."""
        if not isinstance(mapping, dict):
            raise ConfigError(f"the configuration must be a mapping of keys to values, not {_kind(mapping)}")
        bad_keys = [key for key in mapping if not isinstance(key, str)]
        if bad_keys:
            raise ConfigError(f"configuration keys must be names, not {bad_keys[0]!r}")
        return cls(**mapping)

    @classmethod
    def from_yaml(cls, text: str) -> LLMTrainingConfiguration:
        """Builds a configuration from YAML text (safe loading only)."""
        from llm_magics.cell import load_yaml

        return cls.from_dict(load_yaml(text) or {})

    def to_dict(self, *, masked: bool = True) -> dict[str, Any]:
        """Every field as plain data, so a run can be repeated exactly. ``masked``: as it may be
        shown or stored (credentials in URIs hidden, tokens masked); else with the secrets, for
        the trainer only."""
        from llm_magics.db import redacted

        values = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}
        return redacted(values) if masked else values

    def changes(self) -> dict[str, Any]:
        """The fields that differ from their defaults, secrets masked."""
        defaults = _defaults(type(self))
        return {key: value for key, value in self.to_dict().items() if value != defaults.get(key)}

    def replace(self, **changes: Any) -> LLMTrainingConfiguration:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def collection(self) -> str | None:
        """The collection the documents come from."""
        if isinstance(self.select, dict):
            return self.select.get("collection")
        return self.select or self.data

    @property
    def runs_on_ray(self) -> bool:
        return self.on_ray or self.backend == "ray" or self.ray_address is not None

    def training_arguments(self, **overrides: Any) -> SFTConfig:
        """The ``SFTConfig`` the trainer gets, built (and checked) on the machine that trains."""
        import torch

        values = {name: getattr(self, name) for name in _sft_field_names()}
        values.update(overrides)
        # transformers 5 renamed gradient_checkpointing; pass the new name so it does not warn
        checkpointing = values.pop("gradient_checkpointing")
        if values["activation_checkpointing"] is None:
            values["activation_checkpointing"] = bool(checkpointing)
        values["gradient_checkpointing"] = None
        if not torch.cuda.is_available():
            values["dataloader_pin_memory"] = False
            # accelerate treats several CPU processes (Ray workers) as one job only with use_cpu
            values["use_cpu"] = values["use_cpu"] or not torch.backends.mps.is_available()
        if values["bf16"] is None:
            values["bf16"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if values["fp16"] and not torch.cuda.is_available():
            raise ConfigError("fp16: mixed precision in float16 needs a CUDA GPU and none is visible — remove fp16")
        try:
            return SFTConfig(**values)
        except ValueError as error:
            raise ConfigError(f"{error}".strip()) from None


LLMTrainer = LLMTrainingConfiguration
"""The seed's name for a configuration that also names its data (``select``, ``key``)."""


def _validated_init(cls: type) -> None:
    """Checks names and types of the keyword arguments before the dataclass ``__init__`` runs."""
    dataclass_init = cls.__init__

    @functools.wraps(dataclass_init)
    def validated_init(self, /, **kwargs: Any) -> None:  # a key named 'self' is an unknown key
        dataclass_init(self, **_checked_arguments(type(self), kwargs))

    cls.__init__ = validated_init


_validated_init(LLMTrainingConfiguration)


def _checked_arguments(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    fields_ = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _type_hints(cls)
    problems, checked = [], {}
    for key, value in kwargs.items():
        name = ALIASES.get(key, key)
        if name not in fields_:
            problems.append(f"unknown key '{key}'{did_you_mean(key, [*fields_, *ALIASES])}")
        elif name in checked:
            problems.append(f"'{key}' is given twice (also as '{_other_name(name, key, kwargs)}')")
        else:
            problem = _type_problem(value, hints[name])
            if problem:
                problems.append(f"{key}: {problem}")
            checked[name] = value
    if problems:
        # also report the range and combination problems among the values of the right type
        typed = {k: v for k, v in checked.items() if _type_problem(v, hints[k]) is None}
        problems += _value_problems(types.SimpleNamespace(**{**_defaults(cls), **typed}))
        raise ConfigError(problems)
    return checked


def _other_name(name: str, key: str, kwargs: dict[str, Any]) -> str:
    return next(k for k in kwargs if ALIASES.get(k, k) == name and k != key)


def _value_problems(config: Any) -> list[str]:
    # nan passes every comparison below, so a non-finite number is refused first
    infinite = [name for name in _init_fields() if isinstance(getattr(config, name), float)]
    infinite = [name for name in infinite if not math.isfinite(getattr(config, name))]
    problems = [f"{name}: must be a finite number, got {getattr(config, name)!r}" for name in infinite]
    for name, low in _AT_LEAST.items():
        value = getattr(config, name)
        if value is not None and name not in infinite and value < low:
            problems.append(f"{name}: must be at least {low}, got {value!r}")
    for name in _POSITIVE:
        if name not in infinite and getattr(config, name) <= 0:
            problems.append(f"{name}: must be greater than 0, got {getattr(config, name)!r}")
    for name in _FRACTIONS:
        value = getattr(config, name)
        if value is not None and name not in infinite and not 0 <= value < 1:
            problems.append(f"{name}: must be at least 0 and below 1, got {value!r}")
    if config.max_steps == 0 or config.max_steps < -1:
        problems.append(
            f"max_steps: must be a positive number of steps, or -1 for num_train_epochs, got {config.max_steps}"
        )
    problems += _data_problems(config) + _ray_problems(config.ray_configs)
    if config.fp16 and config.bf16:
        problems.append("fp16 and bf16: choose one")
    if config.bits is not None and not config.use_lora:
        problems.append("bits: a quantized model trains only through LoRA — set use_lora: true, or remove bits")
    return problems


def _ray_problems(ray_configs: dict[str, Any] | None) -> list[str]:
    """What can be told without importing Ray (seconds): the shapes; Ray checks the rest at the start."""
    problems = []
    for key in ("scaling_config", "run_config"):
        value = (ray_configs or {}).get(key)
        if value is not None and not hasattr(value, "__dataclass_fields__") and not isinstance(value, dict):
            problems.append(f"ray_configs.{key}: must be a mapping, got {_shown(value)}")
    scaling = (ray_configs or {}).get("scaling_config")
    workers = scaling.get("num_workers", 1) if isinstance(scaling, dict) else 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        problems.append(f"ray_configs.scaling_config.num_workers: must be a whole number, at least 1, got {workers!r}")
    return problems


def _data_problems(config: Any) -> list[str]:
    problems = []
    if config.data is not None and config.select is not None:
        problems.append("data and select: give one — data: NAME, or select: {collection: NAME, filter: ...}")
    if isinstance(config.select, dict):
        allowed = ("collection", "filter", "projection", "limit")
        for key in config.select:
            if key not in allowed:
                problems.append(
                    f"select: unknown key '{key}'{did_you_mean(str(key), allowed)}; valid: {one_of(allowed)}"
                )
        if not isinstance(config.select.get("collection"), str):
            problems.append("select: needs collection: NAME")
        limit = config.select.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            problems.append(f"select.limit: must be a positive integer, got {limit!r}")
        for key in ("filter", "projection"):
            if not isinstance(config.select.get(key) or {}, dict):
                problems.append(f"select.{key}: must be a mapping")
    if (config.prompt is None) != (config.response is None):
        problems.append("prompt and response: give both field names (the loss is on the response)")
    if config.messages is not None and config.prompt is not None:
        problems.append("messages and prompt/response: choose one data format")
    if config.task == "text-classification" and config.y is None:
        problems.append("y: text-classification needs the label field, e.g. y: label")
    if config.prompt_template is not None and "{prompt}" not in config.prompt_template:
        problems.append("prompt_template: must contain {prompt}")
    return problems


# --- types -----------------------------------------------------------------------------------


def _type_problem(value: Any, annotation: Any) -> str | None:
    """Returns why ``value`` does not fit ``annotation``, or None when it fits."""
    if _fits(value, annotation):
        return None
    return f"expected {_describe(annotation)}, got {_shown(value)}"


def _fits(value: Any, annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        choices = _enum_choices(args)
        if choices is not None and isinstance(value, str):
            return value in choices
        return any(_fits(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in [member.value for member in annotation]  # may be unhashable
    if origin is list or annotation is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value if args)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True  # a library type we do not check (e.g. accelerate's ParallelismConfig)


def _enum_choices(args: tuple[Any, ...]) -> list[str] | None:
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [member.value for member in arg]
    return None


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        choices = _enum_choices(args)
        if choices is not None:
            return one_of(choices)
        literals = [a for arg in args for a in (typing.get_args(arg) if typing.get_origin(arg) is Literal else ())]
        if literals and all(typing.get_origin(a) is Literal or a is type(None) for a in args):
            return one_of(literals) + " or null"
        return " or ".join(dict.fromkeys(_describe(arg) for arg in args))
    if origin is Literal:
        return one_of(args)
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
        list: "a list",
        dict: "a mapping",
    }
    if annotation in names:
        return names[annotation]
    if origin in names:
        return names[origin] + (f" of {_describe(args[0])}s" if origin is list and args else "")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return one_of(member.value for member in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _shown(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({_kind(value)})"


def _kind(value: Any) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [item.value if isinstance(item, enum.Enum) else item for item in value]
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _defaults(cls: type) -> dict[str, Any]:
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            values[f.name] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


@functools.cache
def _init_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(LLMTrainingConfiguration) if f.init)


@functools.cache
def _sft_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(SFTConfig) if f.init)


@functools.cache
def _enum_fields() -> tuple[str, ...]:
    hints = _type_hints(LLMTrainingConfiguration)
    return tuple(name for name, hint in hints.items() if _enum_choices(typing.get_args(hint)) is not None)
