"""The database and the files: the package's records, the embedded store over its SQLite file,
checkpoint files on disk and in GridFS, the seed's query objects, the database handle."""

from llm_magics.core.lazy import exports

_WHERE = {
    "Collection": "query",
    "DatabaseHandle": "database",
    "Document": "query",
    "EmbeddedClient": "embedded",
    "Store": "records",
    "open_database": "database",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
