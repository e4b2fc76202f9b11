"""connect(): three kinds of database behind one pymongo API; passwords never shown."""

from __future__ import annotations

import time

import pytest

from llm_magics import connect
from llm_magics.core.errors import DatabaseError
from llm_magics.core.secrets import redact_text


def test_mongomock_databases_are_shared_by_name_within_the_process():
    connect("mongomock://shared-name")["docs"].insert_one({"a": 1})
    assert connect("mongomock://shared-name")["docs"].count_documents({}) == 1
    assert connect("mongomock://other-name")["docs"].count_documents({}) == 0


def test_the_handle_is_the_pymongo_api(db):
    db["docs"].insert_many([{"text": "a"}, {"text": "b"}])
    assert db.list_collection_names() == ["docs"]
    assert db.get_collection("docs").count_documents({"text": "a"}) == 1


def test_a_collection_named_like_a_handle_attribute_is_reached_by_its_name(db):
    """``db.store`` is the package's records; ``db["store"]`` is always the user's collection."""
    for name in ("store", "load", "apply", "show", "model_cache", "uri"):
        db[name].insert_one({"name": name})
    assert sorted(doc["name"] for name in ("store", "load", "apply") for doc in db[name].find()) == [
        "apply",
        "load",
        "store",
    ]
    assert db["model_cache"].count_documents({}) == 1 and db["uri"].find_one()["name"] == "uri"
    assert db.store.model_names() == [] and callable(db.load) and db.uri.startswith("mongomock://")


def test_a_bad_scheme_lists_the_valid_ones():
    with pytest.raises(DatabaseError, match=r"the scheme must be .*'mongodb://'.* did you mean 'mongodb'"):
        connect("mongdb://localhost")


def test_an_unreachable_server_fails_fast_naming_the_host_not_the_password():
    started = time.monotonic()
    with pytest.raises(DatabaseError) as raised:
        connect("mongodb://alice:s3cret-pw@127.0.0.1:9/?serverSelectionTimeoutMS=500", timeout_ms=500)
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "127.0.0.1:9" in message and "cannot reach MongoDB" in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("mongodb://alice:pw@host:27017/db", "mongodb://alice:***@host:27017/db"),
        (
            "mongodb+srv://bob:p%40ss@cluster.example.net/x?retryWrites=true",
            "mongodb+srv://bob:***@cluster.example.net/x?retryWrites=true",
        ),
        ("mongodb://host/db?authSource=admin&password=pw", "mongodb://host/db?authSource=admin&password=***"),
        ("mongodb://host/db", "mongodb://host/db"),
        (
            "mongodb://host/db?tls=true&tlsCertificateKeyFilePassword=pw&w=1",
            "mongodb://host/db?tls=true&tlsCertificateKeyFilePassword=***&w=1",
        ),
        (
            "mongodb://host/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok,SERVICE_NAME:x",
            "mongodb://host/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:***,SERVICE_NAME:x",
        ),
        (
            "mongodb://host/?authMechanismProperties=AWS_SESSION_TOKEN%3Atok",
            "mongodb://host/?authMechanismProperties=AWS_SESSION_TOKEN%3A***",
        ),
        ("mongodb://host/?myApiSecret=s&apiToken=t", "mongodb://host/?myApiSecret=***&apiToken=***"),
    ],
)
def test_redact_hides_passwords(uri, shown):
    assert redact_text(uri) == shown
    assert redact_text(f"cannot talk to {uri} (refused)") == f"cannot talk to {shown} (refused)"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("mongodb://alice:s3cret-pw@host:notaport/db", "Port contains non-digit characters"),
        ("mongodb://alice:s3cret-pw@host:99999/db", "Port must be an integer between 0 and 65535"),
        ("mongodb://alice:s3cret-pw@[::1:27017/db", "an IPv6 address literal must be enclosed in '\\[' and '\\]'"),
    ],
)
def test_a_malformed_uri_is_our_error_naming_the_problem_not_the_password(uri, problem):
    with pytest.raises(DatabaseError, match=problem) as raised:
        connect(uri, timeout_ms=300)
    assert str(raised.value).startswith("database URI 'mongodb://alice:***@")
    assert "s3cret-pw" not in str(raised.value)


def test_show_names_the_valid_kinds(db):
    with pytest.raises(DatabaseError, match="show: kind must be 'model', 'run' or 'checkpoint' — did you mean 'model'"):
        db.show("models")
    assert db.show("model") == []
