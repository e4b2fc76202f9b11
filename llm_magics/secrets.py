"""Secrets kept out of sight: passwords in URIs and the values of settings named like credentials.

Every display, record and log line that may hold a URI or a user's settings goes through here.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_PASSWORD_IN_NETLOC = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?P<tail>@)", re.I)
# an option whose name holds password / pwd / secret / token (tlsCertificateKeyFilePassword=...)
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&][^=&\s]*(?:password|pwd|secret|token)[^=&\s]*=)[^&\s]*", re.I)
# a property inside an option's value (authMechanismProperties=AWS_SESSION_TOKEN:...)
_SECRET_PROPERTY = re.compile(r"(?P<head>[=,][a-z_]*(?:password|secret|token)[a-z_]*(?::|%3A))[^,&\s]*", re.I)
# tokenizer settings named like secrets that are not
_NOT_SECRET = frozenset({"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})


def redact_text(text: object) -> str:
    """The text with passwords hidden, wherever a URI (a database's, a bucket's) may appear in it."""
    shown = _PASSWORD_IN_NETLOC.sub(rf"\g<head>{MASK}\g<tail>", str(text))
    shown = _SECRET_PROPERTY.sub(rf"\g<head>{MASK}", shown)
    return _PASSWORD_IN_QUERY.sub(rf"\g<head>{MASK}", shown)


def is_secret(key: object) -> bool:
    """Whether a setting's name says its value is a credential: token, hub_token, password, api_key..."""
    name = str(key).lower().replace("-", "_")
    if name in _NOT_SECRET:
        return False
    return name == "token" or name.endswith("_token") or any(w in name for w in ("password", "secret", "api_key"))


def masked(value: Any) -> Any:
    """Plain data that is safe to show or store: credentials in URIs hidden, values of secret
    settings masked, other objects (e.g. a Ray ScalingConfig) as their redacted repr."""
    if isinstance(value, dict):
        return {str(k): MASK if is_secret(k) and isinstance(v, str) and v else masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(repr(value))


def without_masked(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments without the values a record masked: from_pretrained then falls back
    to the HF_TOKEN environment variable or ``hf auth login``."""
    return {k: v for k, v in kwargs.items() if v != MASK}
