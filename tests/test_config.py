"""LLMTrainingConfiguration: the seed's names and defaults, every SFTConfig field, and errors that
name the key and what would be valid (all problems at once)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from helpers import snippet_config
from trl import SFTConfig

from llm_magics import LLMTrainer, LLMTrainingConfiguration
from llm_magics.core.errors import ConfigError


def test_seed_snippet_builds_and_maps_dropped_names():
    config = snippet_config(overwrite_output_dir=True)
    assert config.eval_strategy == "steps"
    assert config.overwrite_output_dir is True
    assert (config.lora_r, config.max_length) == (4, 64)


def test_seed_defaults():
    config = LLMTrainingConfiguration()
    assert (config.use_lora, config.lora_r, config.lora_alpha, config.lora_dropout) == (True, 8, 16, 0.05)
    assert (config.lora_target_modules, config.lora_bias, config.max_length, config.log_to_db) == (
        None,
        "none",
        512,
        True,
    )
    assert config.trust_remote_code is False


def test_every_sft_config_field_is_accepted_under_its_own_name():
    ours = {f.name for f in dataclasses.fields(LLMTrainingConfiguration)}
    assert {f.name for f in dataclasses.fields(SFTConfig) if f.init} <= ours
    config = LLMTrainingConfiguration(
        num_train_epochs=2,
        gradient_accumulation_steps=4,
        save_total_limit=3,
        logging_steps=5,
        seed=7,
        lr_scheduler_type="cosine",
        optim="adamw_torch",
    )
    assert (config.num_train_epochs, config.lr_scheduler_type, config.optim) == (2, "cosine", "adamw_torch")


def test_round_trip_through_a_dict_gives_the_same_configuration():
    config = LLMTrainingConfiguration(
        max_steps=6,
        eval_strategy="steps",
        eval_steps=2,
        lora_r=4,
        select={"collection": "docs", "filter": {"lang": "en"}},
        bits=4,
    )
    data = config.to_dict()
    assert data["eval_strategy"] == "steps" and data["select"]["filter"] == {"lang": "en"}
    assert LLMTrainingConfiguration.from_dict(data) == config


def test_secrets_are_masked_in_the_dict_and_the_repr():
    config = LLMTrainingConfiguration(hub_token="hf_secret123")
    assert "hf_secret123" not in str(config.to_dict())
    assert "hf_secret123" not in repr(config)


def test_credentials_and_tokens_are_masked_wherever_the_configuration_is_shown():
    config = LLMTrainingConfiguration(
        ray_configs={"run_config": {"storage_path": "s3://AK:hunter2@b/r"}},
        model_kwargs={"token": "hf_hunter2"},
        tokenizer_kwargs={"token": "hf_hunter2", "pad_token": "<pad>"},
        run_name="mongodb://u:hunter2@h/db",
    )
    for shown in (repr(config), str(config), str(config.to_dict()), str(config.changes())):
        assert "hunter2" not in shown
    assert "s3://AK:***@b/r" in repr(config) and "'token': '***'" in repr(config)
    assert config.to_dict()["tokenizer_kwargs"]["pad_token"] == "<pad>"  # named like a secret, but is not one
    assert config.model_kwargs["token"] == "hf_hunter2"  # from_pretrained still gets it
    assert config.to_dict(masked=False)["ray_configs"]["run_config"]["storage_path"] == "s3://AK:hunter2@b/r"


def test_repr_shows_only_what_differs_from_the_defaults():
    assert repr(LLMTrainingConfiguration(lora_r=4)) == "LLMTrainingConfiguration(lora_r=4)"


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="unknown key 'learning_rat' — did you mean 'learning_rate'"):
        LLMTrainingConfiguration(learning_rat=1e-4)


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        LLMTrainingConfiguration(lora_r="eight", eval_strategy="sometimes", bits=3, lora_dropout=2.0)
    message = str(raised.value)
    assert message.startswith("4 problems")
    assert "lora_r: expected an integer, got 'eight'" in message
    assert "eval_strategy: expected 'no', 'steps' or 'epoch'" in message
    assert "bits: expected 4 or 8 or null, got 3" in message
    assert "lora_dropout: must be at least 0 and below 1, got 2.0" in message


@pytest.mark.parametrize(
    ("changes", "wording"),
    [
        ({"max_steps": 0}, "max_steps: must be a positive number of steps"),
        ({"learning_rate": 0.0}, "learning_rate: must be greater than 0"),
        ({"lora_dropout": 1.0}, "lora_dropout: must be at least 0 and below 1"),
        ({"lora_r": 0}, "lora_r: must be at least 1"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size: must be at least 1"),
        ({"data": "a", "select": "b"}, "data and select: give one"),
        ({"prompt": "question"}, "prompt and response: give both"),
        ({"select": {"collection": "a", "filtr": {}}}, "select: unknown key 'filtr' — did you mean 'filter'"),
        ({"bits": 4, "use_lora": False}, "bits: a quantized model trains only through LoRA"),
        ({"task": "text-classification"}, "y: text-classification needs the label field"),
        ({"prompt_template": "Q: ", "prompt": "q", "response": "a"}, "prompt_template: must contain {prompt}"),
        ({"evaluation_strategy": "steps", "eval_strategy": "no"}, "'eval_strategy' is given twice"),
        ({"learning_rate": float("nan")}, "learning_rate: must be a finite number, got nan"),
        ({"num_train_epochs": float("nan")}, "num_train_epochs: must be a finite number, got nan"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm: must be a finite number, got inf"),
        ({"eval_strategy": ["steps"]}, "eval_strategy: expected 'no', 'steps' or 'epoch', got ['steps'] (a list)"),
        ({"optim": {"name": "x"}}, "optim: expected 'adamw_torch', "),
        ({"self": 1}, "unknown key 'self'"),
        (
            {"ray_configs": {"scaling_config": {"num_workers": "zero"}}},
            "ray_configs.scaling_config.num_workers: must be a whole number, at least 1, got 'zero'",
        ),
        ({"ray_configs": {"run_config": "fast"}}, "ray_configs.run_config: must be a mapping, got 'fast'"),
    ],
)
def test_bad_values_name_the_key(changes, wording):
    with pytest.raises(ConfigError, match=re.escape(wording)):
        LLMTrainingConfiguration(**changes)


def test_yaml_reads_learning_rates_written_without_a_dot():
    config = LLMTrainingConfiguration.from_yaml("learning_rate: 2e-4\nlora_r: 4\nfp16: no\n")
    assert config.learning_rate == pytest.approx(2e-4)
    assert config.fp16 is False


def test_training_arguments_are_the_libraries_own_and_checked():
    args = LLMTrainingConfiguration(max_steps=3, eval_strategy="steps", eval_steps=1).training_arguments(
        output_dir="out"
    )
    assert isinstance(args, SFTConfig)
    assert args.max_steps == 3 and args.max_length == 512


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 works where there is a GPU")
def test_fp16_on_a_machine_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="fp16: mixed precision in float16 needs a CUDA GPU"):
        LLMTrainingConfiguration(fp16=True).training_arguments(output_dir="out")


def test_llm_trainer_takes_the_seeds_key_and_select():
    trainer = LLMTrainer(identifier="t", select="datas", key="text", output_dir="o", max_steps=2)
    assert (trainer.collection, trainer.X) == ("datas", "text")


def test_replace_validates_again():
    config = LLMTrainingConfiguration()
    with pytest.raises(ConfigError, match="lora_r"):
        config.replace(lora_r=-1)
