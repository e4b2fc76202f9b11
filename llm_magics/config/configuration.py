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
from dataclasses import dataclass, field
from typing import Any, Literal

from trl import SFTConfig

from llm_magics.config import methods
from llm_magics.config.cell import load_yaml
from llm_magics.config.data_keys import DataKeys
from llm_magics.config.eval_generate import EvalGenerate, placement_problems
from llm_magics.config.eval_generate import parse as parse_eval_generate
from llm_magics.config.fast_paths import attention_problems, machine_problems
from llm_magics.config.validation import (
    argument_problems,
    defaults,
    enum_fields,
    init_fields,
    kind_of,
    plain,
    value_problems,
)
from llm_magics.core.devices import cuda_bf16
from llm_magics.core.errors import ConfigError
from llm_magics.core.secrets import masked as masked_values

# Names from the seed (transformers 4) and from the magics' YAML, mapped to our fields.
ALIASES = {
    "evaluation_strategy": "eval_strategy",
    "model_name_or_path": "model",
    "key": "X",
}


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

    # --- how it trains (SPEC §11) ---
    method: Literal["sft", "dpo", "kto", "orpo", "simpo", "grpo"] = field(
        default="sft",
        metadata=_help(
            "How the run trains: 'sft' (supervised), 'dpo', 'kto', 'orpo', 'simpo' (preferences) or 'grpo' "
            "(rewards); each on TRL's trainer of that name."
        ),
    )
    method_args: dict[str, Any] = field(
        default_factory=dict,
        metadata=_help(
            "The method's own TRL settings (beta, loss_type, num_generations, max_completion_length, ...); "
            "usually given as top-level keys."
        ),
    )
    reward_funcs: list[Any] | None = field(
        default=None,
        metadata=_help("grpo: the reward functions, callables from the notebook ({{ f }}) or 'module:function' names."),
    )
    completions_to_record: int = field(
        default=8,
        metadata=_help("grpo: how many sampled completions, with their rewards, are kept at each logging step."),
    )

    # --- evaluation by generation (SPEC §12) ---
    eval_generate: dict[str, Any] | None = field(
        default=None,
        metadata=_help(
            "Score checkpoints by what they answer on held-out documents: {metrics: [exact_match, rouge_l, "
            "{{ my_metric }}], limit, max_new_tokens, when: save | end}."
        ),
    )

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
    attn_implementation: str | None = field(
        default=None,
        metadata=_help(
            "The attention kernel: 'sdpa', 'eager', 'flex_attention', 'flash_attention_2' (a CUDA GPU and "
            "flash-attn); null: transformers' choice (sdpa)."
        ),
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
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata=_help(
            "Modules trained in full beside the adapter and saved with it, e.g. [lm_head] (peft's modules_to_save)."
        ),
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
    prompt: str | list[str] | None = field(
        default=None,
        metadata=_help(
            "The prompt field; with response, the loss is on the response only. SFT: a list of fields "
            "([instruction, input]: alpaca) joins them with a blank line, leaving out empty ones."
        ),
    )
    response: str | None = field(default=None, metadata=_help("The response field (with prompt)."))
    chosen: str | None = field(default=None, metadata=_help("dpo, orpo, simpo: the preferred response's field."))
    rejected: str | None = field(default=None, metadata=_help("dpo, orpo, simpo: the dispreferred response's field."))
    completion: str | None = field(default=None, metadata=_help("kto: the completion's field."))
    label: str | None = field(
        default=None, metadata=_help("kto: the field saying whether the completion is desirable (true/false).")
    )
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

    # --- early stopping ---
    early_stopping_patience: int | None = field(
        default=None,
        metadata=_help(
            "Stop when metric_for_best_model (default eval_loss) has not improved for N evaluations; "
            "needs a save at every evaluation."
        ),
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata=_help("How much the metric must improve to count as an improvement.")
    )

    # --- where it runs and where files go ---
    backend: Literal["kernel", "thread", "process", "ray", "ray-job"] | None = field(
        default=None,
        metadata=_help("'kernel' (blocking), 'thread' (background), 'process' (detached), 'ray' or 'ray-job'."),
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
    resume_from_checkpoint: bool | str | int | None = field(
        default=None,
        metadata=_help(
            "Continue from a checkpoint of this model: true (the latest), a step, 'RUN:STEP' or 'best'; "
            "false or null: start fresh."
        ),
    )

    def __post_init__(self) -> None:
        # Validation only; see the module docstring for why TrainingArguments' own runs later.
        problems = value_problems(self, init_fields(type(self))) + methods.method_problems(self)
        problems += self._eval_generate_problems() + attention_problems(self.attn_implementation)
        given = self.model_kwargs.get("attn_implementation")
        if self.attn_implementation and given not in (None, self.attn_implementation):
            problems.append("attn_implementation: given twice, differently (once in model_kwargs) — keep one")
        if problems:
            raise ConfigError(problems)
        for name in enum_fields(type(self)):
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
            raise ConfigError(f"the configuration must be a mapping of keys to values, not {kind_of(mapping)}")
        bad_keys = [key for key in mapping if not isinstance(key, str)]
        if bad_keys:
            raise ConfigError(f"configuration keys must be names, not {bad_keys[0]!r}")
        return cls(**mapping)

    @classmethod
    def from_yaml(cls, text: str) -> LLMTrainingConfiguration:
        """Builds a configuration from YAML text (safe loading only)."""
        return cls.from_dict(load_yaml(text) or {})

    def to_dict(self, *, masked: bool = True) -> dict[str, Any]:
        """Every field as plain data, so a run can be repeated exactly. ``masked``: as it may be
        shown or stored (credentials in URIs hidden, tokens masked, reward functions by name); else
        with the secrets and the functions themselves."""
        values = {name: plain(getattr(self, name)) for name in init_fields(type(self))}
        if self.reward_funcs is not None and masked:  # a record keeps a function by its name, never its code
            values["reward_funcs"] = [reward_name(f) for f in self.reward_funcs]
        block = self.generation_eval() if masked else None
        if block is not None:
            values["eval_generate"] = block.to_dict()
        return masked_values(values) if masked else values

    def recorded(self) -> tuple[dict[str, Any], list[str]]:
        """The configuration as a run's record keeps it (``to_dict``), and its keys set away from
        their defaults (what a run's configuration panel lists first)."""
        values, defaults = self.to_dict(), _defaults(type(self))
        return values, [name for name, value in values.items() if value != defaults.get(name)]

    def generation_eval(self) -> EvalGenerate | None:
        """The ``eval_generate`` block, checked; None when the run scores no generations."""
        return None if self.eval_generate is None else parse_eval_generate(self.eval_generate)

    def _eval_generate_problems(self) -> list[str]:
        if self.eval_generate is None:
            return []
        try:
            block = parse_eval_generate(self.eval_generate)
        except ConfigError as error:
            return list(error.problems)
        return placement_problems(self, block)

    def changes(self) -> dict[str, Any]:
        """The fields that differ from their defaults, secrets masked."""
        default = defaults(type(self))
        return {key: value for key, value in self.to_dict().items() if value != default.get(key)}

    def replace(self, **changes: Any) -> LLMTrainingConfiguration:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def collection(self) -> str | None:
        """The collection the documents come from."""
        if isinstance(self.select, dict):
            return self.select.get("collection")
        return self.select or self.data

    def data_keys(self) -> DataKeys:
        """What the data floor needs of this configuration (and nothing else of it)."""
        return DataKeys(
            collection=self.collection,
            select=self.select if isinstance(self.select, dict) else None,
            task=self.task,
            X=self.X,
            y=self.y,
            prompt=self.prompt,
            response=self.response,
            prompt_template=self.prompt_template,
            messages=self.messages,
            method=self.method,
            chosen=self.chosen,
            rejected=self.rejected,
            completion=self.completion,
            label=self.label,
            max_length=self.max_length,
            seed=self.seed,
            valid_fraction=self.valid_fraction,
            evaluate=str(self.eval_strategy) != "no",
        )

    @property
    def runs_on_ray(self) -> bool:
        return self.on_ray or self.backend in ("ray", "ray-job") or self.ray_address is not None

    def training_arguments(self, **overrides: Any) -> SFTConfig:
        """The ``SFTConfig`` the trainer gets, built (and checked) on the machine that trains."""
        import torch

        values = {name: getattr(self, name) for name in _sft_field_names()}
        values.update(overrides)
        if "activation_checkpointing" in values:
            # transformers 5.2x renamed gradient_checkpointing; pass the new name so it does not warn
            checkpointing = values.pop("gradient_checkpointing")
            if values["activation_checkpointing"] is None:
                values["activation_checkpointing"] = bool(checkpointing)
            values["gradient_checkpointing"] = None
        else:  # an earlier transformers 5 knows the old names only
            values["gradient_checkpointing"] = bool(values["gradient_checkpointing"])
            if "activation_checkpointing_kwargs" in values:
                values["gradient_checkpointing_kwargs"] = values.pop("activation_checkpointing_kwargs")
        values["resume_from_checkpoint"] = None  # where to resume is the run's plan, passed to train()
        if not torch.cuda.is_available():
            values["dataloader_pin_memory"] = False
            # accelerate treats several CPU processes (Ray workers) as one job only with use_cpu
            values["use_cpu"] = values["use_cpu"] or not torch.backends.mps.is_available()
        if values["bf16"] is None:
            values["bf16"] = cuda_bf16()
        if values["fp16"] and not torch.cuda.is_available():
            raise ConfigError("fp16: mixed precision in float16 needs a CUDA GPU and none is visible — remove fp16")
        fast = {**values, "attn_implementation": self.attn_implementation}
        problems = machine_problems(fast, torch.cuda.is_available())
        if problems:
            raise ConfigError(problems)
        if values.get("padding_free") and not values.get("packing"):
            values["max_length"] = None  # the documents are cut at max_length already (data.training_set)
        try:
            return methods.config_class(self.method)(**methods.trainer_settings(self, values))
        except ValueError as error:
            raise ConfigError(f"{error}".strip()) from None

    def lora_config(self) -> Any:
        """peft's ``LoraConfig``; ``lora_target_modules: null`` means every linear layer but the head."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_target_modules or "all-linear",
            bias=self.lora_bias,
            modules_to_save=self.lora_modules_to_save,
            task_type="SEQ_CLS" if self.task == "text-classification" else "CAUSAL_LM",
        )


def reward_name(function: Any) -> str:
    """A reward function as a record and a message name it: its name, or its 'module:function'."""
    if isinstance(function, str):
        return function
    return getattr(function, "__name__", None) or type(function).__name__


LLMTrainer = LLMTrainingConfiguration
"""The seed's name for a configuration that also names its data (``select``, ``key``)."""


def _validated_init(cls: type) -> None:
    """Checks names and types of the keyword arguments before the dataclass ``__init__`` runs."""
    dataclass_init = vars(cls)["__init__"]

    @functools.wraps(dataclass_init)
    def validated_init(self: Any, /, **kwargs: Any) -> None:  # a key named 'self' is an unknown key
        kwargs, unknown = _method_settings(type(self), kwargs)
        checked, problems = argument_problems(type(self), kwargs, ALIASES)
        problems = unknown + problems
        if problems:
            raise ConfigError(problems)
        dataclass_init(self, **checked)

    setattr(cls, "__init__", validated_init)  # noqa: B010 - mypy refuses assigning to a method


def _method_settings(cls: type, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Moves the chosen method's own settings (``beta: 0.2``) into ``method_args``; a key that is no
    field, alias or setting of the method is an unknown key (named, with the method that has it)."""
    fields = init_fields(cls)
    method = kwargs.get("method", "sft")
    method = method if method in methods.METHODS else "sft"  # the method key's own check names it
    others = [key for key in kwargs if key not in fields and key not in ALIASES]
    if not others:
        return kwargs, []
    own = methods.own_settings(method)
    moved = {key: kwargs[key] for key in others if key in own}
    unknown = [methods.unknown_setting(key, method, (*fields, *ALIASES)) for key in others if key not in own]
    rest = {key: value for key, value in kwargs.items() if key not in others}
    if moved:
        given = rest.get("method_args")
        both = sorted(set(moved) & set(given)) if isinstance(given, dict) else []
        unknown += [f"'{key}' is given twice (also in method_args)" for key in both]
        rest["method_args"] = {**(given if isinstance(given, dict) else {}), **moved}
    return rest, unknown


_validated_init(LLMTrainingConfiguration)


@functools.cache
def _sft_field_names() -> tuple[str, ...]:
    return init_fields(SFTConfig)


_DEFAULTS: dict[type, dict[str, Any]] = {}  # each configuration class's to_dict() with no key set


def _defaults(cls: type[LLMTrainingConfiguration]) -> dict[str, Any]:
    if cls not in _DEFAULTS:
        _DEFAULTS[cls] = cls().to_dict()
    return _DEFAULTS[cls]
