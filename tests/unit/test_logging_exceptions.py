"""Exceptions in log lines: every frame and each exception's reason, never the values a library's message
quotes (a duplicate key, pydantic's ``input_value``, an AWS request parameter, a dict key)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

import boto3
import pytest
import structlog
from botocore.exceptions import ClientError
from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from fanout.config import Settings
from fanout.logging import short_id
from tests.conftest import Server, dev_settings
from tests.unit.conftest import ReadLogs

log = structlog.get_logger("fanout.test")
RAW_ID = "L0SM9cOFvHcCIhw="


def _only(read: ReadLogs) -> tuple[dict[str, Any], str]:
    [line] = read()
    return line, json.dumps(line)


async def _duplicate_key(mongo: Server) -> Exception:
    """A real DuplicateKeyError from SecantusDB: the second insert of ``RAW_ID``."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url)
    records = client[f"logs_{secrets.token_hex(4)}"]["websocketconnections"]
    try:
        await records.create_index("connectionId", unique=True)
        await records.insert_one({"connectionId": RAW_ID, "userId": "u1"})
        with pytest.raises(DuplicateKeyError) as raised:
            await records.insert_one({"connectionId": RAW_ID, "userId": "u1"})
        return raised.value
    finally:
        await client.drop_database(records.database.name)
        await client.close()


async def test_a_chained_duplicate_key_keeps_frames_and_code_not_the_key(
    mongo_server: Server, json_logs: ReadLogs
) -> None:
    """A DuplicateKeyError raised on as another error: both named with their frames, the key nowhere."""
    duplicate = await _duplicate_key(mongo_server)
    assert RAW_ID in str(duplicate)  # pymongo's own text quotes it
    try:
        raise RuntimeError("the record could not be stored") from duplicate
    except RuntimeError:
        log.exception("route_failed", error="RuntimeError")
    line, text = _only(json_logs)
    told = line["exception"]
    assert "pymongo.errors.DuplicateKeyError: code 11000 index connectionId\n" in told
    assert "direct cause of the following exception" in told
    assert told.endswith("RuntimeError: the record could not be stored")
    assert "in insert_one" in told
    assert RAW_ID not in text


async def test_a_lost_task_exception_from_asyncio_keeps_no_repr(
    mongo_server: Server, json_logs: ReadLogs
) -> None:
    """asyncio's report of a task whose exception nobody retrieved is cut before the task's repr, which
    quotes the exception's message (the duplicate key)."""
    duplicate = await _duplicate_key(mongo_server)

    async def fails() -> None:
        raise duplicate

    task = asyncio.get_running_loop().create_task(fails())
    await asyncio.wait([task])
    asyncio.get_running_loop().call_exception_handler(
        {"message": "Task exception was never retrieved", "exception": task.exception(), "future": task}
    )
    line, text = _only(json_logs)
    assert ("asyncio", "Task exception was never retrieved") == (line["logger"], line["event"])
    assert "DuplicateKeyError: code 11000" in line["exception"]
    assert RAW_ID not in text


def test_a_settings_error_is_told_by_field_and_rule_without_its_input(json_logs: ReadLogs) -> None:
    """pydantic's text quotes the input (the whole settings, the JWT secret among them): the line keeps
    the rule that failed and drops the input."""
    secret = f"short-{secrets.token_hex(4)}"
    with pytest.raises(ValidationError) as raised:
        Settings(jwt_secret=secret)
    assert secret in str(raised.value)
    log.error("lifecycle_start_failed", exc_info=raised.value)
    line, text = _only(json_logs)
    assert (
        "ValidationError: 1 validation error for Settings: "
        "(root): Value error, FANOUT_JWT_SECRET must be at least 32 bytes for HS256 [value_error]"
    ) in line["exception"]
    assert secret not in text


def test_an_aws_error_is_told_by_code_and_operation_not_its_message(
    moto_server: Server, json_logs: ReadLogs
) -> None:
    """An SQS error whose message quotes a request value is told by its code, operation and status."""
    settings = dev_settings(moto_server)
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    url = sqs.create_queue(QueueName=settings.queue_name)["QueueUrl"]
    hostile = RAW_ID.rstrip("=")
    entries = [{"Id": hostile, "MessageBody": "a"}, {"Id": hostile, "MessageBody": "b"}]
    with pytest.raises(ClientError) as raised:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    sqs.close()
    assert hostile in str(raised.value)
    log.warning("relay_failed", detail=raised.value, exc_info=raised.value)
    line, text = _only(json_logs)
    told = "BatchEntryIdsNotDistinct on SendMessageBatch (HTTP 400)"
    assert told in line["detail"]
    assert told in line["exception"]
    assert hostile not in text


def test_a_missing_key_is_told_by_its_type(json_logs: ReadLogs) -> None:
    """A KeyError's text is its key, here a raw connection id: the line says only what kind of key."""
    sockets: dict[str, object] = {}
    try:
        sockets[RAW_ID]
    except KeyError:
        log.exception("frame_failed")
    line, text = _only(json_logs)
    assert line["exception"].endswith("KeyError: a str key")
    assert RAW_ID not in text


def test_group_members_are_each_told_safely(json_logs: ReadLogs) -> None:
    """An exception group lists its members, each by type and safe reason."""
    try:
        raise ExceptionGroup("posts failed", [KeyError(RAW_ID), ValueError("bad answer")])
    except ExceptionGroup:
        log.exception("fan_out_failed")
    line, text = _only(json_logs)
    assert "ExceptionGroup: posts failed\n" in line["exception"]
    assert "  | KeyError: a str key\n" in line["exception"]
    assert line["exception"].endswith("  | ValueError: bad answer")
    assert RAW_ID not in text


def test_a_management_url_keeps_the_ids_digest_and_a_uri_loses_its_password(json_logs: ReadLogs) -> None:
    """In any text, a management URL's connection id becomes its digest and a URI's password is masked."""
    password = secrets.token_hex(6)
    logging.getLogger("aiohttp.client").warning(
        "POST https://a1b2.execute-api.us-east-1.amazonaws.com/prod/@connections/%s failed; mongodb://app:%s@db",
        RAW_ID.replace("=", "%3D"),
        password,
    )
    line, text = _only(json_logs)
    assert f"/prod/@connections/{short_id(RAW_ID)} failed; mongodb://app:[redacted]@db" in line["event"]
    assert RAW_ID.rstrip("=") not in text
    assert password not in text
