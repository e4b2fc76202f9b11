"""Helpers for tests: seed-style documents and a configuration that trains in about a second."""

from __future__ import annotations


def qa_docs(count: int = 40, valid_every: int = 10) -> list[dict]:
    """Seed-style documents with a _fold field."""
    return [
        {
            "text": f"### Human: what is {i}? ### Assistant: it is {i}",
            "_fold": "valid" if i % valid_every == 0 else "train",
        }
        for i in range(count)
    ]


def snippet_config(**changes):
    """The configuration of issue #2's snippet, argument for argument (the seed's dropped names too)."""
    from llm_magics import LLMTrainingConfiguration

    return LLMTrainingConfiguration(
        **{
            "identifier": "cfg",
            "output_dir": "output/llm-finetune",
            "max_steps": 6,
            "save_steps": 2,
            "eval_steps": 2,
            "evaluation_strategy": "steps",
            "per_device_train_batch_size": 2,
            "use_lora": True,
            "lora_r": 4,
            "max_length": 64,
            **changes,
        }
    )


def small_config(**changes):
    """A configuration that trains the tiny model in about a second."""
    from llm_magics import LLMTrainingConfiguration

    values = {
        "max_steps": 6,
        "save_steps": 2,
        "eval_steps": 2,
        "eval_strategy": "steps",
        "per_device_train_batch_size": 2,
        "lora_r": 4,
        "max_length": 64,
    }
    values.update(changes)
    return LLMTrainingConfiguration(**values)


class Shell:
    """A real IPython shell with llm_magics loaded, whose cells re-raise their errors."""

    def __init__(self, settings: dict | None = None):
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        # the process's shell: display() and output capture go through it
        self.ip = InteractiveShell.instance()
        self.ip.reset(new_session=False)
        self.ip.config.LLMMagics = Config(settings or {})
        self.ip.run_line_magic("reload_ext", "llm_magics")

    def run(self, code: str):
        """Runs a cell; returns (result, captured output); raises what the cell raised."""
        from IPython.utils.capture import capture_output

        with capture_output() as captured:
            result = self.ip.run_cell(code)
        result.raise_error()
        return result.result, captured

    @property
    def ns(self) -> dict:
        return self.ip.user_ns


def custom_code_model(tiny_path, directory, marker):
    """A copy of the tiny model whose config names its own code (``auto_map``), as a Hub repo
    with custom code does: ``configuration_x.py`` and ``modeling_x.py`` subclass the Llama classes
    under a model type transformers does not know, and importing either one creates ``marker``.
    Returns the directory; ``marker`` exists only if that code ran."""
    import json
    import shutil
    from pathlib import Path

    directory = Path(directory)
    shutil.copytree(tiny_path, directory)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "llm-magics-custom"  # no class of transformers' own can stand in
    config["architectures"] = ["CustomForCausalLM"]
    config["auto_map"] = {
        "AutoConfig": "configuration_x.CustomConfig",
        "AutoModelForCausalLM": "modeling_x.CustomForCausalLM",
    }
    (directory / "config.json").write_text(json.dumps(config))
    ran = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (directory / "configuration_x.py").write_text(
        "from transformers import LlamaConfig\n"
        + ran
        + "class CustomConfig(LlamaConfig):\n    model_type = 'llm-magics-custom'\n"
    )
    (directory / "modeling_x.py").write_text(
        "from transformers import LlamaForCausalLM\n"
        "from .configuration_x import CustomConfig\n"
        + ran
        + "class CustomForCausalLM(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    return directory


class Outage:
    """A database that can stop answering (a MongoDB server that goes away), or refuse some writes
    for good (a quota), around a real one.

    ``down``: every call raises ``AutoReconnect``. ``refuse(collection, method, args)``: when it
    returns True, that call raises ``OperationFailure``, as a server over its quota does.
    """

    def __init__(self, database, refuse=None, message="connection refused"):
        self.database, self.down, self.refuse, self.message = database, False, refuse, message

    def __getitem__(self, name):
        return _Collection(self, self.database[name], name)

    def __getattr__(self, name):
        return getattr(self.database, name)


class _Collection:
    def __init__(self, outage, collection, name):
        self.outage, self.collection, self.collection_name = outage, collection, name

    def __getattr__(self, name):
        from pymongo.errors import AutoReconnect, OperationFailure

        attribute = getattr(self.collection, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            if self.outage.down:
                raise AutoReconnect(self.outage.message)
            if self.outage.refuse is not None and self.outage.refuse(self.collection_name, name, args):
                raise OperationFailure("you are over your space quota, using 513 MB of 512 MB", code=8000)
            return attribute(*args, **kwargs)

        return call


# Six facts, each with a preferred and a dispreferred answer (the preference methods' tests).
FACTS = [
    ("capital of France?", " Paris", " Rome"),
    ("2+2?", " four", " five"),
    ("sky color?", " blue", " green"),
    ("ice is?", " cold", " hot"),
    ("fire is?", " hot", " cold"),
    ("cats say?", " meow", " woof"),
]


def preference_docs(copies: int = 8) -> list[dict]:
    """Prompt / chosen / rejected documents (DPO, ORPO, SimPO)."""
    return [{"q": q, "good": good, "bad": bad} for _ in range(copies) for q, good, bad in FACTS]


def kto_docs(copies: int = 8) -> list[dict]:
    """Prompt / completion / label documents (KTO): each fact's good answer desirable, its bad one not."""
    return [
        {"q": q, "answer": answer, "ok": ok}
        for _ in range(copies)
        for q, good, bad in FACTS
        for answer, ok in ((good, True), (bad, False))
    ]
