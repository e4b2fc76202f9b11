"""The one training function: the same code trains in the kernel, in a thread and in a Ray worker."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import RunError
from llm_magics.models.generate import generate
from llm_magics.models.loader import BaseModel, load_base_model, load_tokenizer
from llm_magics.training.methods import method_trainer, samples_of
from llm_magics.training.run_log import warnings_as_events

if TYPE_CHECKING:
    from llm_magics.config.configuration import LLMTrainingConfiguration
    from llm_magics.training.callbacks import Sink, StopSignal


@dataclass
class TrainJob:
    """Everything a training process needs; it pickles, so it can travel to a Ray worker."""

    run_id: str
    base: BaseModel
    config: LLMTrainingConfiguration  # validated once, in the kernel
    train: Any  # datasets.Dataset of input_ids / labels
    valid: Any | None
    output_dir: str
    args: Any | None = None  # the trainer's SFTConfig, built in the kernel; None: built where it trains
    resume_from: str | None = None
    adapter: str | None = None
    template: dict[str, Any] | None = None
    kernel_node: str | None = None  # the Ray node of the kernel
    ship_checkpoints: bool | None = None  # send checkpoint files to the kernel; None: when on another node
    # grpo: the reward functions; in another process, each cloudpickled (training.rewards.packed)
    reward_funcs: list[Any] | None = None
    evaluation: Any | None = None  # eval_generate's EvalJob: scored at each save (or at the end)


def trainer_arguments(config: LLMTrainingConfiguration, output_dir: str) -> Any:
    """The ``SFTConfig`` of a run: the configuration's, writing into ``output_dir``. Pruning is the
    recorder's (it keeps the best and the selected checkpoint); the live view replaces the
    progress bar unless ``disable_tqdm: false``."""
    early = {"metric_for_best_model": config.metric_for_best_model or "eval_loss"}
    return config.training_arguments(
        **(early if config.early_stopping_patience else {}),
        output_dir=output_dir,
        save_total_limit=None,
        disable_tqdm=config.disable_tqdm is not False,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
    )


def train(
    job: TrainJob, sink: Sink, stop: StopSignal | None = None, *, device_map: Any = None, echo_warnings: bool = True
) -> dict[str, Any]:
    """Trains ``job`` and reports through ``sink``; returns the trainer's summary metrics.

    Args:
        job: the model, configuration and tokenized data.
        sink: receives the callback's events (see ``training.callbacks``), and a ``warning`` event
            for each warning raised or logged while it trains (for the run's log).
        stop: when set, a checkpoint is saved and training ends.
        device_map: where the model goes (a Ray worker passes its own GPU).
        echo_warnings: the warnings also show where they would without the log (off in a process
            whose output is the log).
    """
    with warnings_as_events(sink, echo=echo_warnings):
        return _train(job, sink, stop, device_map)


def _train(job: TrainJob, sink: Sink, stop: StopSignal | None, device_map: Any) -> dict[str, Any]:
    from transformers import set_seed

    from llm_magics.training.callbacks import ProgressCallback

    config = job.config
    args = job.args if job.args is not None else trainer_arguments(config, job.output_dir)
    # before the adapter's weights are drawn (the trainer seeds only after): the same configuration
    # trains the same in any process, whatever ran there before
    set_seed(args.seed, deterministic=bool(args.full_determinism))
    tokenizer = load_tokenizer(job.base.path, job.base.tokenizer_kwargs)
    model = _trainable(load_base_model(job.base, device_map=device_map), config, job)
    early = _early_stopping(config)
    callback = ProgressCallback(sink, stop, _prober(config, tokenizer, job.template), config.probe_steps, early)
    if job.evaluation is not None:
        callback.scorer, callback.score_at = _scorer(job, tokenizer), job.evaluation.settings["when"]
        callback.score_names = tuple(job.evaluation.names)
    with _quiet_datasets():
        trainer = _trainer(config, args, model, tokenizer, job, [callback, *([early] if early else [])])
    callback.samples = samples_of(trainer, config.completions_to_record)
    if args.disable_tqdm:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the view and the store show the logs
    with _out_of_memory_explained(config):
        result = trainer.train(resume_from_checkpoint=job.resume_from)
    return {"stopped": callback.stopped, **result.metrics}


@contextlib.contextmanager
def _out_of_memory_explained(config: LLMTrainingConfiguration) -> Iterator[None]:
    """An accelerator out of memory becomes a run error that says which settings to lower."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        hints = [
            f"per_device_train_batch_size (now {config.per_device_train_batch_size}; raise "
            "gradient_accumulation_steps to keep the effective batch)",
            f"max_length (now {config.max_length})",
        ]
        if not config.gradient_checkpointing:
            hints.append("gradient_checkpointing: true")
        if config.bits is None:
            hints.append("bits: 4")
        raise RunError("out of GPU memory while training — lower " + ", ".join(hints)) from None


def _trainable(model: Any, config: LLMTrainingConfiguration, job: TrainJob) -> Any:
    """Prepares a quantized model for training and attaches a starting adapter, if any."""
    if config.bits is not None:
        from peft import prepare_model_for_kbit_training

        _keep_4bit_weights_trainable(model)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=bool(config.gradient_checkpointing),
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if job.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, job.adapter, is_trainable=True)
    return model


def _keep_4bit_weights_trainable(model: Any) -> None:
    """Stops bitsandbytes from repacking 4-bit weights for CPU inference during evaluation.

    On CPUs with AVX512-BF16, a ``Linear4bit`` in eval mode converts its weight, for good, to a
    layout whose kernel has no backward; the training steps after the first evaluation then get
    wrong gradients (the loss drifts from a run without evaluation). Training keeps the layout
    that backpropagates.
    """
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _early_stopping(config: LLMTrainingConfiguration) -> Any:
    """transformers' ``EarlyStoppingCallback`` when the configuration asks for it, else None. The best
    checkpoint is ours to name (``@best``): the trainer does not load it back at the end."""
    if not config.early_stopping_patience:
        return None
    from transformers import EarlyStoppingCallback

    class _EarlyStopping(EarlyStoppingCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            pass  # its checks are the configuration's; its warning is about load_best_model_at_end

    return _EarlyStopping(config.early_stopping_patience, config.early_stopping_threshold)


def _trainer(
    config: LLMTrainingConfiguration, args: Any, model: Any, tokenizer: Any, job: TrainJob, callbacks: list[Any]
) -> Any:
    peft_config = config.lora_config() if config.use_lora and job.adapter is None else None
    common = {
        "args": args,
        "train_dataset": job.train,
        "eval_dataset": job.valid,
        "processing_class": tokenizer,
        "callbacks": callbacks,
    }
    if config.method != "sft":
        return method_trainer(config.method, {"model": model, "peft_config": peft_config, **common}, job.reward_funcs)
    if config.task == "text-classification":
        from transformers import DataCollatorWithPadding, Trainer

        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        return Trainer(
            model=model, data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_accuracy, **common
        )
    from trl import SFTTrainer

    return SFTTrainer(model=model, peft_config=peft_config, **common)


def _accuracy(prediction: Any) -> dict[str, float]:
    import numpy as np

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


def _prober(
    config: LLMTrainingConfiguration, tokenizer: Any, template: dict[str, Any] | None
) -> Callable[[Any], list[dict[str, str]]] | None:
    """Answers the probe prompts with the model being trained, at each save."""
    prompts = config.probe_prompts
    if not prompts or config.task != "causal-lm":
        return None

    def probe(model: Any) -> list[dict[str, str]]:
        was_training = model.training
        try:
            answers = generate(
                model,
                tokenizer,
                prompts,
                template,
                max_new_tokens=config.probe_max_new_tokens,
                do_sample=False,
            )
        finally:
            model.train(was_training)
        return [{"prompt": p, "answer": a} for p, a in zip(prompts, answers, strict=True)]

    return probe


def _scorer(job: TrainJob, tokenizer: Any) -> Callable[[Any], dict[str, Any]]:
    """Scores the model in training on the held-out examples (``eval_generate``)."""
    from llm_magics.eval.scorer import Scorer

    evaluation = job.evaluation
    assert evaluation is not None  # called only for a job that evaluates
    scorer = Scorer(evaluation)

    def score(model: Any) -> dict[str, Any]:
        was_training = model.training
        try:
            scored = scorer(model, tokenizer, job.template)
        finally:
            model.train(was_training)
        return {"key": evaluation.key, "record": scored.record(evaluation), "rows": scored.rows}

    return score


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hides the datasets library's progress bars while the trainer prepares the data, and the
    warning of a tokenizer that ends every text with EOS (ByT5's) when TRL's preference trainers
    tokenize a text that already ends with it: it is not added twice."""
    from llm_magics.data.cache import quiet_datasets

    with quiet_datasets(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This sequence already has", category=UserWarning)
        yield
