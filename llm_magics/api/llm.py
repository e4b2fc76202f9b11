"""LLM: a base model with its adapters, trained with ``fit`` and used with ``predict``."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.config.refs import CheckpointRef
from llm_magics.core.cache import ModelCache
from llm_magics.core.errors import ConfigError, ModelError
from llm_magics.export.merged import export_model
from llm_magics.models.checkpoint import base_of
from llm_magics.models.generate import generate
from llm_magics.models.loader import BaseModel, Loaded, check_model_path, load_cached, load_tokenizer, resolve_adapter
from llm_magics.store.artifacts import is_adapter
from llm_magics.store.database import DatabaseHandle, open_database
from llm_magics.training.launch import plan_run, start_run

if TYPE_CHECKING:
    from llm_magics.config.configuration import LLMTrainingConfiguration
    from llm_magics.runs.run import Run

OWN_ADAPTER = object()  # predict's default: the model's own adapter; adapter=None means none at all


class LLM:
    """A causal language model: a base model, optionally quantized, plus LoRA checkpoints.

    Args:
        identifier: the model's name in the database (default: the base model's name).
        model_name_or_path: the base model, a local directory or a model name.
        bits: load the base quantized to 4 or 8 bits.
        adapter_id: an adapter to apply when there is no checkpoint of this model: a directory or
            ``checkpoint://NAME/STEP``.
        model_kwargs: passed to ``from_pretrained`` (``trust_remote_code`` is off unless set here).
        tokenizer_kwargs: passed to ``AutoTokenizer.from_pretrained``.
        trainer: a configuration for ``db.apply(llm)`` (the seed's form).
        db: the database holding its checkpoints.
        checkpoint: which checkpoint predicts: None (the selected one, else the latest), a step,
            'RUN:STEP', 'latest' or 'best'.
    """

    task = "causal-lm"

    def __init__(
        self,
        identifier: str | None = None,
        model_name_or_path: str | None = None,
        *,
        bits: int | None = None,
        adapter_id: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        trainer: LLMTrainingConfiguration | None = None,
        db: DatabaseHandle | None = None,
        checkpoint: CheckpointRef | str | int | None = None,
        labels: list[str] | None = None,
    ):
        if not model_name_or_path:
            raise ConfigError("model_name_or_path: name the base model (a local directory or a model name)")
        if bits not in (None, 4, 8):
            raise ConfigError(f"bits: must be 4, 8 or None, got {bits!r}")
        self.model_name_or_path = str(model_name_or_path)
        self.identifier = identifier or Path(self.model_name_or_path).name
        self.bits, self.adapter_id = bits, adapter_id
        self.model_kwargs, self.tokenizer_kwargs = dict(model_kwargs or {}), dict(tokenizer_kwargs or {})
        self.trainer, self.db, self.checkpoint = trainer, db, checkpoint
        self.labels = list(labels or [])
        self._cache: ModelCache | None = None
        self._loaded_record: dict[str, Any] | None = None  # the checkpoint a load resolved, used until fit
        self._loaded_base: BaseModel | None = None  # the base that checkpoint trained on
        # whether checkpoints whose records ask for the model's own code may load: the user's own say
        self.trust_remote_code = bool(self.model_kwargs.get("trust_remote_code"))

    @classmethod
    def of_checkpoint(
        cls,
        db: DatabaseHandle,
        name: str,
        record: dict[str, Any],
        ref: Any,
        *,
        recorded: dict[str, Any],
        trust_remote_code: bool = False,
    ) -> LLM:
        """Model ``name`` bound to its checkpoint ``record`` (resolved from ``ref``), on the base that
        the checkpoint's run trained on (``recorded``, from its run's record). ``trust_remote_code``:
        the loading user allows the model's own code to run, when its record asks for it."""
        base = base_of(name, record, recorded, trust_remote_code=trust_remote_code)
        llm = cls(
            name,
            base.path,
            bits=base.bits,
            adapter_id=recorded.get("adapter_id"),
            model_kwargs=base.model_kwargs,
            tokenizer_kwargs=base.tokenizer_kwargs,
            db=db,
            checkpoint=ref,
            labels=base.labels,
        )
        llm.trust_remote_code = trust_remote_code
        llm._loaded_record, llm._loaded_base = record, base
        return llm

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str,
        identifier: str | None = None,
        *,
        adapter_id: str | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> LLM:
        """Like transformers' ``from_pretrained``; ``load_in_4bit`` / ``load_in_8bit`` become ``bits``."""
        bits = 4 if model_kwargs.pop("load_in_4bit", False) else 8 if model_kwargs.pop("load_in_8bit", False) else None
        return cls(
            identifier,
            model_name_or_path,
            bits=bits,
            adapter_id=adapter_id,
            model_kwargs=model_kwargs,
            tokenizer_kwargs=tokenizer_kwargs,
        )

    # --- training ---

    def fit(
        self,
        X: str | None = None,
        select: Any = None,
        configuration: LLMTrainingConfiguration | None = None,
        db: DatabaseHandle | None = None,
        on_ray: bool = False,
        ray_address: str | None = None,
        ray_configs: dict[str, Any] | None = None,
        *,
        y: str | None = None,
        transform: Callable[[dict], Any] | None = None,
        resume_from_checkpoint: str | int | bool | None = None,
        backend: str | None = None,
        detach: bool = False,
        sweep: dict[str, Any] | None = None,
        on_start: Callable[[Run], None] | None = None,
        method: str | None = None,
        reward_funcs: list[Any] | None = None,
    ) -> Any:
        """Fine-tunes on the selected documents; returns the run (finished unless it runs in the
        background: ``backend="thread"``, Ray, or ``detach=True``: a process of its own, or a Ray
        Job with ``on_ray``, that outlives the kernel, followed from any kernel with ``db.run(run.id)``).
        ``method`` and ``reward_funcs`` (GRPO's functions) override the configuration's (SPEC §11)."""
        config = self.configuration(
            configuration,
            X=X,
            select=select,
            y=y,
            on_ray=on_ray,
            ray_address=ray_address,
            ray_configs=ray_configs,
            method=method,
            reward_funcs=reward_funcs,
        )
        self.db = db or self.db or open_database()
        if sweep is not None:
            return self._sweep(config, sweep, detach=detach)
        checked = plan_run(
            self.identifier,
            config,
            self.db,
            transform=transform,
            backend=backend,
            resume=resume_from_checkpoint,
            detach=detach,
        )
        self.labels = checked.data.labels
        self.trust_remote_code = self.trust_remote_code or checked.config.trust_remote_code
        self._loaded_record = self._loaded_base = None  # the new run's checkpoints answer from now on
        return start_run(checked, on_start=on_start)

    def _sweep(self, config: LLMTrainingConfiguration, sweep: dict[str, Any], *, detach: bool) -> Any:
        """``fit(..., sweep={...})``: the trials on Ray Tune; returns the ``SweepRun``."""
        from llm_magics.training.sweeps import plan_sweep, start_sweep

        assert self.db is not None  # fit() opened it
        mapping = {**config.to_dict(masked=False), "sweep": sweep}
        checked = plan_sweep(self.identifier, mapping, self.db, ray_address=config.ray_address)
        return start_sweep(checked, detach=detach)

    def configuration(
        self, configuration: LLMTrainingConfiguration | None = None, **given: Any
    ) -> LLMTrainingConfiguration:
        """The training configuration with this model's fields and the given data fields in it."""
        from llm_magics.config.configuration import LLMTrainingConfiguration  # imports trl: only when configuring

        config = configuration or self.trainer or LLMTrainingConfiguration()
        changes: dict[str, Any] = {
            "model": self.model_name_or_path,
            "bits": self.bits if self.bits is not None else config.bits,  # a configuration's bits: 4 holds
            "task": self.task,
            "model_kwargs": {**config.model_kwargs, **self.model_kwargs},
            "tokenizer_kwargs": {**config.tokenizer_kwargs, **self.tokenizer_kwargs},
        }
        if self.adapter_id:
            changes["adapter_id"] = self.adapter_id
        if given.get("select") is not None:
            changes.update(_selection(given["select"]))
        named = ("X", "y", "ray_address", "ray_configs", "method", "reward_funcs")
        changes.update({k: given[k] for k in named if given.get(k) is not None})
        if given.get("on_ray"):
            changes["on_ray"] = True
        return config.replace(**changes)

    # --- prediction ---

    def predict(
        self,
        prompt: str | list[str],
        *,
        checkpoint: CheckpointRef | str | int | None = None,
        adapter: Any = OWN_ADAPTER,
        prompt_template: str | None = None,
        **generate_kwargs: Any,
    ) -> str | list[str]:
        """Generates from the model's checkpoint (selected, else latest; or ``checkpoint``).

        The prompt is written the way the checkpoint saw prompts in training (its prompt template
        or chat template); ``prompt_template`` overrides that, with a warning when it differs.
        ``adapter=None`` generates with the base model alone. Other keyword arguments go to
        ``generate`` (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``, ...).
        """
        prompts = _prompts(prompt)
        loaded, adapter_path, template = self._resolve(checkpoint, adapter)
        template = _template(template, prompt_template)
        with loaded.using(adapter_path) as model:
            answers = self._answer(model, loaded.tokenizer, prompts, template, **generate_kwargs)
        return answers[0] if isinstance(prompt, str) else answers

    def _answer(self, model: Any, tokenizer: Any, prompts: list[str], template: dict | None, **kwargs: Any) -> list:
        return generate(model, tokenizer, prompts, template, **kwargs)

    def evaluate(
        self,
        checkpoint: CheckpointRef | str | int | None = None,
        *,
        every: bool = False,
        metrics: list[Any] | None = None,
        on: str | None = None,
        harness: list[str] | None = None,
        tasks_dir: str | None = None,
        progress: Any = None,
        **settings: Any,
    ) -> Any:
        """Scores a stored checkpoint (the selected, else latest; ``every``: all of them) by what it
        answers on its run's held-out documents (``on``: a collection instead); ``metrics`` and the
        other settings are those of ``eval_generate`` (``limit``, ``max_new_tokens``, ``reference``,
        ...); ``harness``: lm-evaluation-harness tasks instead (``tasks_dir``: their YAML files).
        Returns the scores; they are recorded, and reused when asked again the same way."""
        from llm_magics.eval.on_demand import Evaluation, evaluate_checkpoints

        if self.db is None:
            raise ConfigError(f"evaluate: model '{self.identifier}' has no database — fit it first")
        if harness:
            from llm_magics.eval.harness import run_harness

            found = run_harness(
                self.db, self.identifier, checkpoint if checkpoint is not None else self.checkpoint, harness,
                every=every, tasks_dir=tasks_dir, limit=settings.get("limit"), progress=progress,
                trust_remote_code=self.trust_remote_code,
            )  # fmt: skip
            return Evaluation(self.identifier, found)
        block = {"metrics": metrics or ["exact_match", "rouge_l"], **settings, **({"select": on} if on else {})}
        results = evaluate_checkpoints(
            self.db,
            self.identifier,
            checkpoint if checkpoint is not None else self.checkpoint,
            every=every,
            settings=block,
            progress=progress,
            trust_remote_code=self.trust_remote_code,
        )
        return Evaluation(self.identifier, results)

    def predict_one(self, prompt: str, **generate_kwargs: Any) -> str:
        """The seed's older name for ``predict`` of one prompt."""
        return self.predict([prompt], **generate_kwargs)[0]

    def export(
        self,
        directory: str | Path,
        checkpoint: CheckpointRef | str | int | None = None,
        *,
        gguf: str | None = None,
        **gguf_options: Any,
    ) -> Any:
        """Saves the checkpoint (selected, else latest) merged into its base as a standalone model
        directory that ``AutoModelForCausalLM.from_pretrained`` loads; returns the directory.
        With ``gguf`` (a quantization: "f16", "q8_0", "q4_k_m", ...), writes a GGUF for llama.cpp
        and an Ollama Modelfile instead, checked against the merged model (``gguf.export_gguf``:
        ``template``, ``prompts``, ``max_new_tokens``); returns what it wrote and found."""
        if gguf is not None:
            from llm_magics.export.gguf import export_gguf

            return export_gguf(self, directory, checkpoint, gguf, **gguf_options)
        record = self.checkpoint_record(checkpoint)
        if record is None:
            raise ConfigError(f"export: model '{self.identifier}' has no checkpoints in a database — fit it first")
        base = self.trained_base(record)
        info = {
            "model": self.identifier,
            "checkpoint": record["_id"],
            "step": record["step"],
            "base_model": base.path,
            "template": record.get("template"),
        }
        return export_model(directory, self.checkpoint_files(record), base, info)

    def _resolve(self, checkpoint: Any, adapter: Any) -> tuple[Loaded, str | None, dict | None]:
        """The loaded base, the adapter directory to activate and the prompt format."""
        if adapter is not OWN_ADAPTER:
            return load_cached(self.cache, self.base()), adapter, None
        record = self.checkpoint_record(checkpoint)
        if record is None:
            return load_cached(self.cache, self.base()), self._own_adapter(), None
        base, path = self.trained_base(record), self.checkpoint_files(record)
        if is_adapter(path):
            return load_cached(self.cache, base), str(path), record.get("template")
        return load_cached(self.cache, dataclasses.replace(base, path=str(path))), None, record.get("template")

    def trained_base(self, record: dict[str, Any]) -> BaseModel:
        """The base a checkpoint's run trained on (each run keeps its own)."""
        if record is self._loaded_record and self._loaded_base is not None:
            return self._loaded_base
        if self.db is None:
            raise ModelError(f"checkpoint {record['_id']}: the model has no database to read it from")
        recorded = self.db.store.run_base(record["run"])
        return base_of(self.identifier, record, recorded, trust_remote_code=self.trust_remote_code)

    def tokenizer_of(self, record: dict[str, Any]) -> Any:
        """The tokenizer of the base a checkpoint trained on (what its export carries)."""
        base = self.trained_base(record)
        return load_tokenizer(base.path, base.tokenizer_kwargs)

    def checkpoint_record(self, checkpoint: CheckpointRef | str | int | None = None) -> dict[str, Any] | None:
        """The checkpoint that predicts, or None when this model has none in its database."""
        if checkpoint is None and self._loaded_record is not None:
            return self._loaded_record
        if self.db is None or not self.db.store.has_model(self.identifier):
            if checkpoint is not None:
                raise ModelError(f"model '{self.identifier}' has no checkpoints in a database — fit it first")
            return None
        return self.db.store.checkpoint(self.identifier, checkpoint if checkpoint is not None else self.checkpoint)

    def _own_adapter(self) -> str | None:
        if self.adapter_id is None:
            return None
        return resolve_adapter(self.db, self.adapter_id)

    def checkpoint_files(self, record: dict[str, Any]) -> Path:
        """The checkpoint's local directory, its files checked once per cache (downloaded from GridFS if needed)."""
        cache = self.cache
        if record["_id"] not in cache.verified:
            if self.db is None:
                raise ModelError(f"checkpoint {record['_id']}: the model has no database to read it from")
            cache.verified[record["_id"]] = self.db.store.local_checkpoint(record, self.db.downloads)
        return cache.verified[record["_id"]]

    def base(self) -> BaseModel:
        """The base model this object names, and how it loads."""
        return BaseModel(
            check_model_path(self.model_name_or_path),
            self.bits,
            self.task,
            self.model_kwargs,
            self.tokenizer_kwargs,
            self.labels,
        )

    @property
    def cache(self) -> ModelCache:
        """Loaded models: the database's shared cache, else this model's own."""
        if self.db is not None:
            return self.db.model_cache
        if self._cache is None:
            self._cache = ModelCache()
        return self._cache


def _prompts(prompt: Any) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ConfigError("predict: give a text or a list of texts")
    return prompts


def _template(stored: dict | None, given: str | None) -> dict | None:
    """The prompt format to use: the checkpoint's, unless the caller gives another (warned)."""
    if given is None:
        return stored
    trained = (stored or {}).get("prompt_template")
    if stored and stored.get("kind") in ("prompt-response", "messages") and trained != given:
        shown = trained if trained is not None else "its chat template"
        warnings.warn(
            f"the checkpoint was trained with prompt template {shown!r}; using {given!r} instead",
            UserWarning,
            stacklevel=3,
        )
    return {"kind": "prompt-response", "prompt_template": given}


def _selection(select: Any) -> dict[str, Any]:
    """``select`` as the seed allows it: a collection name, a mapping, or a collection object."""
    if isinstance(select, str):
        return {"data": select, "select": None}
    if isinstance(select, dict):
        return {"select": select, "data": None}
    import mongomock
    import pymongo.collection

    if isinstance(select, pymongo.collection.Collection | mongomock.Collection):
        return {"data": select.name, "select": None}
    raise ConfigError(f"select: give a collection name or {{collection, filter, ...}}, not {type(select).__name__}")
