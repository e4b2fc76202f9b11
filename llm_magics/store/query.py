"""The seed's query objects, so its scripts run unchanged: ``Collection("datas").find()`` names
training data, ``db.execute(Collection("datas").insert_many(docs))`` runs a pymongo call.

A query is data, not code: a collection name, a pymongo method name and its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_magics.core.errors import ConfigError


class Document(dict):
    """The seed's ``Document``: a plain mapping stored as it is."""


class Select(dict):
    """``Collection(NAME).find(filter, projection)``: usable as ``select=`` and by ``db.execute``.

    It is the mapping ``{collection, filter, projection, limit}`` that ``select`` takes.
    """

    def limit(self, n: int) -> Select:
        return Select({**self, "limit": n})

    def run(self, mongo_db: Any) -> Any:
        return mongo_db[self["collection"]].find(
            self.get("filter") or {}, self.get("projection"), limit=self.get("limit", 0)
        )


@dataclass(frozen=True)
class Operation:
    """Any other pymongo collection call, e.g. ``insert_many(documents)``."""

    collection: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self, mongo_db: Any) -> Any:
        target = mongo_db[self.collection]
        if not callable(getattr(type(target), self.method, None)):  # pymongo makes sub-collections of other names
            raise ConfigError(f"execute: a collection has no method '{self.method}'")
        return getattr(target, self.method)(*self.args, **self.kwargs)


class Collection:
    """The seed's ``Collection(NAME)``: builds queries that ``db.execute`` runs."""

    def __init__(self, name: str):
        self.name = name

    def find(self, filter: dict[str, Any] | None = None, projection: Any = None) -> Select:
        query = Select(collection=self.name)
        if filter:
            query["filter"] = dict(filter)
        if projection:
            query["projection"] = dict.fromkeys(projection, 1) if isinstance(projection, list) else dict(projection)
        return query

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: Operation(self.name, method, args, kwargs)

    def __repr__(self) -> str:
        return f"Collection({self.name!r})"


def execute(mongo_db: Any, query: Select | Operation) -> Any:
    """Runs a query on ``mongo_db`` (a pymongo-API database)."""
    if not isinstance(query, Select | Operation):
        raise ConfigError(f"execute: give Collection(NAME).find(...) or another Collection call, not {query!r}")
    return query.run(mongo_db)
