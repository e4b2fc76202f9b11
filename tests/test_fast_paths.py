"""The fast paths, one key each (config.fast_paths): what a CPU can do it does, and matches the
default's losses; what it cannot is a one-line error before anything is written. Packed documents
do not attend to each other: a packed batch's loss is the same documents' loss unpacked."""

from __future__ import annotations

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM
from llm_magics.core.errors import ConfigError


@pytest.mark.parametrize(
    ("changes", "wording"),
    [
        ({"attn_implementation": "flash_attention_2"}, "attn_implementation: flash_attention_2 needs a CUDA GPU"),
        ({"attn_implementation": "flash"}, "attn_implementation: 'flash' is not an attention implementation — one of"),
        ({"use_liger_kernel": True}, "use_liger_kernel: needs the liger-kernel package"),
        ({"activation_offloading": True}, "activation_offloading: moves activations from the GPU to CPU memory"),
        (
            {"attn_implementation": "eager", "model_kwargs": {"attn_implementation": "sdpa"}},
            "attn_implementation: given twice, differently",
        ),
    ],
)
def test_a_fast_path_this_machine_cannot_take_is_one_line_and_writes_nothing(db, tiny_path, changes, wording):
    db["d"].insert_many(qa_docs(10))
    with pytest.raises(ConfigError, match=wording) as raised:
        LLM("fast", tiny_path).fit(select="d", db=db, configuration=small_config(**changes))
    assert "\n" not in str(raised.value)
    assert db.store.list_runs("fast") == [] and not (db.artifacts / "fast").exists()


def losses(db, tiny_path, name, **changes):
    config = small_config(max_steps=4, eval_strategy="no", save_steps=4, per_device_train_batch_size=4, **changes)
    run = LLM(name, tiny_path).fit(select="d", db=db, configuration=config)
    assert run.status == "completed", run.error
    return run.metrics["loss"].dropna().tolist()


def test_padding_free_eager_attention_and_checkpointing_train_as_the_default_does(db, tiny_path):
    """The same documents in the same batches: each key changes how, not what, the model computes."""
    db["d"].insert_many(qa_docs(40, valid_every=1000))
    default = losses(db, tiny_path, "default")
    for key, value in (("padding_free", True), ("attn_implementation", "eager"), ("gradient_checkpointing", True)):
        assert losses(db, tiny_path, key, **{key: value}) == pytest.approx(default, rel=1e-4), key


def test_packing_trains_fewer_rows_and_the_loss_falls(db, tiny_path):
    db["d"].insert_many(qa_docs(40, valid_every=1000))
    config = small_config(max_steps=12, eval_strategy="no", save_steps=12, packing=True, learning_rate=1e-2)
    run = LLM("packed", tiny_path).fit(select="d", db=db, configuration=config)
    assert run.status == "completed", run.error
    loss = run.metrics["loss"].dropna().tolist()
    assert loss[-1] < loss[0]


def test_packed_documents_do_not_attend_to_each_other(tiny_path):
    """TRL's padding-free collator puts three documents in one row with position ids restarting at
    each; the model's logits on that row are the three documents' computed one by one. (Without
    the cache, as TRL's trainer calls the model: with it, transformers does not look for packed
    documents.)"""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_path, attn_implementation="sdpa").eval()
    documents = [[5, 17, 33, 41, 9, 12], [7, 7, 30, 2], [50, 61, 22, 18, 90, 91, 3, 4]]
    examples = [{"input_ids": ids} for ids in documents]
    packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert packed["input_ids"].shape == (1, sum(map(len, documents))) and "attention_mask" not in packed
    with torch.no_grad():
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        apart = [model(input_ids=torch.tensor([ids])).logits for ids in documents]
        crossed = model(input_ids=packed["input_ids"], use_cache=False).logits  # no position ids: one long document
    assert torch.allclose(together, torch.cat(apart, dim=1), atol=1e-5)
    assert not torch.allclose(crossed, torch.cat(apart, dim=1), atol=1e-3)  # the check can tell


def test_the_dry_run_says_which_fast_paths_the_run_takes(shell, db):
    db["d"].insert_many(qa_docs(10))
    cell = "%%llm_finetune m --dry-run\nmodel: {{ base_path }}\ndata: d\nlora_r: 4\n"
    packed, _ = shell.run(cell + "packing: true\nattn_implementation: eager\ngradient_checkpointing: true")
    assert dict(packed.facts())["fast paths"] == "packing · gradient_checkpointing · attention eager"
    plain, _ = shell.run(cell)
    assert dict(plain.facts())["fast paths"].startswith("attention sdpa (the default) · packing off")
    assert "fast paths" in plain._repr_html_()
