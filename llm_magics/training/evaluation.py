"""A run's evaluation by generation (SPEC §12), planned in the kernel before anything is written:
the held-out examples read, the notebook's metrics tried on the first of them, the judges' models
found, all ready to travel with the job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm_magics.config.eval_generate import Judge, reference_field
from llm_magics.eval.examples import held_out_examples
from llm_magics.eval.on_demand import judge_model
from llm_magics.eval.scorer import EvalJob, eval_job

if TYPE_CHECKING:
    from collections.abc import Callable

    from llm_magics.config.configuration import LLMTrainingConfiguration
    from llm_magics.store.database import DatabaseHandle


def plan_evaluation(
    config: LLMTrainingConfiguration, db: DatabaseHandle, transform: Callable[[dict], Any] | None, travels: bool
) -> EvalJob | None:
    """The run's ``EvalJob``, or None when it scores no generations; ``travels``: the functions
    packed for another process (one that cannot travel is refused by name)."""
    block = config.generation_eval()
    if block is None:
        return None
    reference = block.reference or reference_field(config) or ""
    keys = config.data_keys()
    examples = held_out_examples(db.mongo_db, keys, reference, block.limit, block.select, transform)
    judges = {m.name: judge_model(db, m, config.trust_remote_code) for m in block.metrics if isinstance(m, Judge)}
    job = eval_job(block, examples, judges)
    return job.travelling() if travels else job
