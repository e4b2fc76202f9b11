"""The basement: what every floor may use, importing nothing of the package (but this folder's
own): the user-facing errors, secrets kept out of sight, tables, the accelerator, processes, the
model cache."""

from llm_magics.core.lazy import exports

_WHERE = {
    "ConfigError": "errors",
    "DataError": "errors",
    "DatabaseError": "errors",
    "LLMMagicsError": "errors",
    "ModelCache": "cache",
    "ModelError": "errors",
    "RunError": "errors",
    "cuda_bf16": "devices",
    "did_you_mean": "errors",
    "html_table": "tables",
    "masked": "secrets",
    "one_of": "errors",
    "owner_alive": "processes",
    "redact_text": "secrets",
    "text_table": "tables",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
