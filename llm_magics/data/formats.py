"""Which training format a collection's documents are in, and the cell keys that train on it.

Recognised (by the fields of the documents, the first that fits): OpenAI chat (``messages`` of
``role`` / ``content``), ShareGPT (``conversations`` of ``from`` / ``value``), preference pairs
(``prompt`` / ``chosen`` / ``rejected``), KTO (``prompt`` / ``completion`` / ``label``), alpaca
(``instruction`` / ``input`` / ``output``), prompt / response, text with a label, text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass(frozen=True)
class Detected:
    """A format and the configuration keys that train on it."""

    name: str
    keys: dict[str, Any]

    def cell(self) -> str:
        """The keys as a cell body writes them."""
        return "\n".join(f"{key}: {_yaml(value)}" for key, value in self.keys.items())


def _yaml(value: Any) -> str:
    return f"[{', '.join(value)}]" if isinstance(value, list) else str(value)


def _chat(value: Any, role: str, content: str) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and role in t and content in t for t in value)
    )


def detect(docs: list[dict[str, Any]]) -> Detected | None:
    """The format most of ``docs`` are in (None: none recognised)."""
    if not docs:
        return None

    def most(test: Any) -> bool:
        return sum(1 for doc in docs if test(doc)) * 2 > len(docs)

    chat = next((k for k in docs[0] if _chat(docs[0][k], "role", "content")), None)
    if chat and most(lambda d: _chat(d.get(chat), "role", "content")):
        return Detected("OpenAI chat", {"messages": chat})
    share = next((k for k in docs[0] if _chat(docs[0][k], "from", "value")), None)
    if share and most(lambda d: _chat(d.get(share), "from", "value")):
        return Detected("ShareGPT", {"messages": share})
    has = lambda *names: most(lambda d: all(d.get(n) is not None for n in names))  # noqa: E731
    if has("prompt", "chosen", "rejected"):
        return Detected(
            "preference pairs", {"method": "dpo", "prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
        )
    if has("prompt", "completion", "label"):
        return Detected("KTO", {"method": "kto", "prompt": "prompt", "completion": "completion", "label": "label"})
    if has("instruction", "output"):
        prompt = ["instruction", "input"] if has("input") else "instruction"
        return Detected("alpaca", {"prompt": prompt, "response": "output"})
    for prompt, response in (("prompt", "response"), ("prompt", "completion"), ("question", "answer")):
        if has(prompt, response):
            return Detected("prompt / response", {"prompt": prompt, "response": response})
    if has("text", "label"):
        return Detected("text with a label", {"task": "text-classification", "X": "text", "y": "label"})
    text = next((k for k in docs[0] if isinstance(docs[0][k], str) and k not in ("_id", "_fold", "_hash")), None)
    if text and most(lambda d: isinstance(d.get(text), str)):
        return Detected("text", {"X": text} if text != "text" else {})
    return None


def as_messages(chat: list[Any]) -> list[Any]:
    """A ShareGPT conversation (``from`` / ``value`` turns) as chat messages (``role`` / ``content``);
    a chat already in messages is returned as it is."""
    if not all(isinstance(t, dict) and "from" in t and "value" in t and "role" not in t for t in chat):
        return chat
    return [{"role": SHAREGPT_ROLES.get(str(t["from"]).lower(), str(t["from"])), "content": t["value"]} for t in chat]
