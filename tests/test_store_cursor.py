"""Reading a collection through the in-memory and embedded stores: every cursor form returns what
MongoDB returns (skip, limit, sort, rewind, clone, indexing), now in linear time (store.linear_cursor)."""

from __future__ import annotations

import pytest

from llm_magics import connect


@pytest.fixture(params=["memory", "embedded"])
def numbers(request, db, tmp_path):
    handle = db if request.param == "memory" else connect(f"embedded://{tmp_path / 'store'}")
    handle["n"].insert_many([{"i": i, "odd": i % 2} for i in range(50)])
    return handle["n"]


def values(cursor):
    return [doc["i"] for doc in cursor]


def test_cursors_return_what_mongodb_returns(numbers):
    assert values(numbers.find()) == list(range(50))
    assert values(numbers.find().skip(45)) == [45, 46, 47, 48, 49]
    assert values(numbers.find().limit(3)) == [0, 1, 2]
    assert values(numbers.find().limit(-3)) == [0, 1, 2]  # a negative limit: one batch of 3
    assert values(numbers.find().skip(48).limit(5)) == [48, 49]
    assert values(numbers.find().skip(60)) == []
    assert values(numbers.find({"odd": 1}).sort("i", -1).skip(1).limit(3)) == [47, 45, 43]
    assert values(numbers.find({}, {"i": 1, "_id": 0}).sort("i", -1).limit(2)) == [49, 48]

    cursor = numbers.find().skip(10).limit(4)
    assert next(cursor)["i"] == 10
    assert values(cursor.clone()) == [10, 11, 12, 13]
    assert values(cursor) == [11, 12, 13]
    with pytest.raises(StopIteration):
        next(cursor)
    cursor.rewind()
    assert values(cursor) == [10, 11, 12, 13]
    assert numbers.find().skip(5)[2]["i"] == 7


def test_a_cursor_sees_the_collection_as_it_was_when_it_began(numbers):
    cursor = numbers.find()
    assert next(cursor)["i"] == 0
    numbers.insert_one({"i": 50})
    assert len(values(cursor)) == 49  # the rest of the result it computed, as mongomock always did
    assert numbers.count_documents({}) == 51
