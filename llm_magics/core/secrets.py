"""Secrets kept out of sight: passwords in URIs and connection strings, tokens in headers, and the
values of settings named like credentials.

Every display, record, log line and error that may hold a URI or a user's settings goes through
here.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:PASSWORD@host — a password may itself hold '@': it runs to the last '@' before the path
_PASSWORD_IN_NETLOC = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^/\s]*)(?P<tail>@)", re.I)
# an option whose name holds password / pwd / secret / token (tlsCertificateKeyFilePassword=...)
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&][^=&\s]*(?:password|pwd|secret|token)[^=&\s]*=)[^&\s]*", re.I)
# a property inside an option's value (authMechanismProperties=AWS_SESSION_TOKEN:...)
_SECRET_PROPERTY = re.compile(r"(?P<head>[=,][a-z_]*(?:password|secret|token)[a-z_]*(?::|%3A))[^,&\s]*", re.I)
# Key=value;Key=value connection strings (Azure storage, ODBC): AccountKey=..., Password=...; and
# NAME=value / NAME: value in free text where the name is a credential's (HF_TOKEN=..., password='...')
_VALUE = r"(?:'[^'\n]*'|\"[^\"\n]*\"|[^;\s\"',&]+)"
_SECRET_ASSIGNMENT = re.compile(
    rf"(?P<head>(?:^|[;\s\"'(,{{])(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)\s*=\s*){_VALUE}",
    re.I,
)
_NAME = re.compile(r"(?<![\w.-])(?P<name>[A-Za-z_][\w.-]*)\s*[=:]\s*")
_VALUE_AT = re.compile(_VALUE)
# credentials whose shape says what they are: Hugging Face, GitHub, OpenAI-style keys
_KNOWN_TOKEN = re.compile(r"\b(?:hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|sk-[\w-]{20,})")
# HTTP credentials in text: "Bearer ...", "Authorization: Basic ..."
_CREDENTIAL_SCHEME = re.compile(
    r"(?P<head>\b(?:Bearer\s+|Authorization\s*[:=]\s*(?:Basic|Token|Digest)?\s*))[A-Za-z0-9._~+/=-]{8,}", re.I
)
# tokenizer settings named like secrets that are not
_NOT_SECRET = frozenset({"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
_SECRET_NAMES = frozenset({"token", "auth", "pwd", "cookie", "authorization"})
_SECRET_PARTS = ("password", "passwd", "secret", "private_key", "api_key", "apikey", "access_key", "credential")


def redact_text(text: object) -> str:
    """The text with passwords hidden, wherever a URI, a connection string or an HTTP credential
    may appear in it."""
    shown = _PASSWORD_IN_NETLOC.sub(rf"\g<head>{MASK}\g<tail>", str(text))
    shown = _SECRET_PROPERTY.sub(rf"\g<head>{MASK}", shown)
    shown = _SECRET_ASSIGNMENT.sub(rf"\g<head>{MASK}", shown)
    shown = _CREDENTIAL_SCHEME.sub(rf"\g<head>{MASK}", shown)
    shown = _masked_assignments(shown)
    shown = _PASSWORD_IN_QUERY.sub(rf"\g<head>{MASK}", shown)
    return _KNOWN_TOKEN.sub(MASK, shown)


def _masked_assignments(text: str) -> str:
    """``NAME=value`` and ``NAME: value`` with a credential's name: the value masked (every
    assignment is looked at, also one that is the value of another: ``failed: HF_TOKEN=...``)."""
    parts, done = [], 0
    for name in _NAME.finditer(text):
        if name.start() < done or not is_secret(name.group("name")):
            continue
        value = _VALUE_AT.match(text, name.end())
        if value is None or value.group(0).strip("'\"") in ("", MASK):
            continue
        parts += [text[done : name.end()], MASK]
        done = value.end()
    return "".join(parts) + text[done:]


def is_secret(key: object) -> bool:
    """Whether a setting's name says its value is a credential: token, hub_token, password, passwd,
    private_key, credentials, auth, Authorization, api_key, and names ending _KEY, _PASS, _PAT..."""
    name = str(key).lower().replace("-", "_")
    if name in _NOT_SECRET:
        return False
    if name in _SECRET_NAMES or name.endswith(("_token", "_auth", "_key", "_pass", "_pat")):
        return True
    return any(part in name for part in _SECRET_PARTS)


def masked(value: Any) -> Any:
    """Plain data that is safe to show or store: credentials in text hidden, whatever a secret
    setting holds masked (text, a list, a mapping), other objects (e.g. a Ray ScalingConfig) as
    their redacted repr. A secret setting's true / false / null stays: it says whether, not what."""
    if isinstance(value, dict):
        return {str(k): MASK if is_secret(k) and _holds_something(v) else masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(repr(value))


def _holds_something(value: Any) -> bool:
    return value is not None and not isinstance(value, bool) and value != "" and value != MASK


def without_masked(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments without the values a record masked: from_pretrained then falls back
    to the HF_TOKEN environment variable or ``hf auth login``."""
    return {k: v for k, v in kwargs.items() if v != MASK}
