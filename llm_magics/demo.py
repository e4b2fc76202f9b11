"""The main job: fine-tune the tiny model on the default embedded store, predict, and say what
happened. Run with ``python -m llm_magics.demo`` (the README's first command does)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from llm_magics.models.tiny import documents

PROMPT = "### Human: What is the capital of France? ### Assistant: "


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=".", help="where .llm_magics/ (store and checkpoints) lives")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)

    from llm_magics import LLM, LLMTrainingConfiguration, _say_data_warnings_plainly, connect, tiny_model

    _say_data_warnings_plainly()  # the repeated facts' warning as its one line, as in a notebook
    workdir = Path(args.workdir).resolve()
    started = time.perf_counter()
    db = connect(f"embedded://{workdir / '.llm_magics'}")
    print(f"database:   {db.uri}")
    base = tiny_model(workdir / ".llm_magics" / "tiny-base")
    print(f"base model: {base} (tiny random Llama, byte-level tokenizer)")
    db["demo_docs"].delete_many({})
    db["demo_docs"].insert_many(documents(64))
    print(f"documents:  {db['demo_docs'].count_documents({})} in collection 'demo_docs'")

    config = LLMTrainingConfiguration(
        max_steps=args.steps,
        save_steps=max(1, args.steps // 3),
        eval_steps=max(1, args.steps // 3),
        eval_strategy="steps",
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        lora_r=16,
        lora_alpha=32,
        max_length=96,
    )
    llm = LLM(identifier="demo-llm", model_name_or_path=str(base), bits=4)
    run = llm.fit(X="text", select="demo_docs", configuration=config, db=db)
    record = run.record
    metrics = run.metrics
    print(
        f"\nrun {run.id}: {record['status']} in {record['duration']:.1f} s, {record['step']} steps, "
        f"{record['counts']['train_docs']} train / {record['counts']['valid_docs']} valid documents"
    )
    print(f"loss:       {metrics['loss'].dropna().iloc[0]:.3f} -> {metrics['loss'].dropna().iloc[-1]:.3f}")
    print("checkpoints:")
    for c in db.show("checkpoint", "demo-llm"):
        flags = " ".join(flag for flag in ("latest", "best", "selected") if c[flag])
        eval_loss = c["metrics"].get("eval_loss")
        print(f"  step {c['step']:>4}  eval_loss {eval_loss:.3f}  {c['size'] / 1024:.0f} KiB  {flags}")
    tuned = db.load("model", "demo-llm")
    print(f"\nprompt:     {PROMPT!r}")
    print(f"base model: {tuned.predict(PROMPT, max_new_tokens=12, adapter=None)!r}")
    print(f"fine-tuned: {tuned.predict(PROMPT, max_new_tokens=12)!r}")
    print(f"\ndone in {time.perf_counter() - started:.1f} s; runs and checkpoints stay in {db.uri}")


if __name__ == "__main__":
    main()
