"""Whether a model name can come from the Hugging Face Hub now, told in seconds.

Without a network, transformers retries the Hub for most of a minute and prints a line per try
before it gives up. A model that is in the local Hub cache needs no network; for any other name,
one TCP connection to the Hub's host (``HF_ENDPOINT``, default huggingface.co), bounded in time,
says whether a download can start. A reachable Hub is remembered for the process.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

PROBE_SECONDS = 3.0
_reached: set[str] = set()


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def cached(name: str) -> bool:
    """Whether the model's config is in the local Hub cache (it loads without a network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # a name the Hub would refuse: the loader says why
        return False


def local_file(name: str, filename: str) -> Path | None:
    """The file ``filename`` of model ``name`` on this machine (its directory, else the Hub
    cache), or None; never downloads."""
    if Path(name).expanduser().is_dir():
        path = Path(name).expanduser() / filename
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, filename)
    except Exception:  # a name the Hub would refuse
        return None
    return Path(found) if isinstance(found, str) else None


def reachable(url: str, seconds: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``seconds`` (name lookup included)."""
    if url in _reached:
        return True
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=seconds):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="llm_magics-hub-probe")
    thread.start()
    thread.join(seconds)
    if answer[:1] == [True]:
        _reached.add(url)
        return True
    return False


def unavailable(name: str) -> str | None:
    """Why the Hub model ``name`` cannot be loaded now (one line), or None when it can."""
    if cached(name):
        return None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    host = urlsplit(endpoint()).hostname or endpoint()
    if offline:
        return (
            f"model '{name}': not a local directory and not in the Hugging Face cache, and HF_HUB_OFFLINE is set "
            "— give a local path, or download it first with network"
        )
    if not reachable(endpoint()):
        return (
            f"model '{name}': not a local directory, not in the Hugging Face cache, and the Hub ({host}) cannot be "
            f"reached within {PROBE_SECONDS:g} s — give a local path, or run where the network reaches it"
        )
    return None
