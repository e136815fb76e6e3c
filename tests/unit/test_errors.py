"""The error tree, the response mapping and secret masking (§2.2, §2.3; the webhook code and tokens never reach a log, an exception text or a repr)."""

from __future__ import annotations

import logging
import pickle

import pytest

from bitrix24_source.errors import (
    ApiError,
    AuthError,
    BatchCommandError,
    Bitrix24Error,
    ConfigError,
    MaskingFilter,
    RateLimitError,
    ServerError,
    TransportError,
    error_from_response,
    mask,
    register_secret,
)


def test_success_bodies_are_not_errors() -> None:
    assert error_from_response(200, {"result": [], "time": {}}) is None
    assert error_from_response(200, {"result": {"item": {"id": 1}}}) is None


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "category"),
    [
        (400, {"error": "", "error_description": "Not found"}, ApiError, "", "validation"),
        (400, {"error": "0", "error_description": "Invalid sorting key"}, ApiError, "0", "validation"),
        (
            404,
            {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
            ApiError,
            "ERROR_METHOD_NOT_FOUND",
            "method",
        ),
        (
            401,
            {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"},
            AuthError,
            "NO_AUTH_FOUND",
            "auth",
        ),
        (401, {"error": "expired_token", "error_description": "expired"}, AuthError, "expired_token", "auth"),
        (
            403,
            {"error": "ACCESS_DENIED", "error_description": "Access denied!"},
            AuthError,
            "ACCESS_DENIED",
            "access",
        ),
        (
            503,
            {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
            RateLimitError,
            "QUERY_LIMIT_EXCEEDED",
            "rate_limit",
        ),
        (
            429,
            {"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"},
            RateLimitError,
            "OPERATION_TIME_LIMIT",
            "rate_limit",
        ),
        (
            500,
            {"error": "INTERNAL_SERVER_ERROR", "error_description": "x"},
            ServerError,
            "INTERNAL_SERVER_ERROR",
            "server",
        ),
        (502, {}, ServerError, "HTTP_502", "server"),
        (
            400,
            {
                "error": {
                    "code": "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
                    "message": "Record with ID = `2` not found",
                }
            },
            ApiError,
            "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
            "not_found",
        ),
    ],
)
def test_mapping(status: int, body: dict, cls: type, code: str, category: str) -> None:
    error = error_from_response(status, body, method="crm.deal.get", request_id="rid-1")
    assert type(error) is cls
    assert error is not None and error.code == code and error.category == category
    assert error.http_status == status and error.method == "crm.deal.get" and error.request_id == "rid-1"
    assert "rid-1" in str(error)


def test_v3_validation_messages_are_joined() -> None:
    body = {
        "error": {
            "code": "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",
            "message": "Error validating request object",
            "validation": [{"message": "Required field `id` is not specified", "field": "id"}],
        }
    }
    error = error_from_response(400, body)
    assert (
        error is not None
        and error.description == "Error validating request object. Required field `id` is not specified"
    )
    assert error.permanent


def test_batch_command_errors() -> None:
    error = error_from_response(
        200,
        {"error": "", "error_description": "ID is not defined"},
        method="crm.lead.get",
        command_key="c3",
        index=3,
        in_batch=True,
    )
    assert isinstance(error, BatchCommandError) and error.command_key == "c3" and error.index == 3
    assert error.code == "" and error.category == "validation" and error.permanent
    assert "command 'c3'" in str(error) and "#3" in str(error)
    limit = error_from_response(
        200, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": ""}, in_batch=True
    )
    assert limit is not None and limit.category == "rate_limit" and not limit.permanent


def test_tree() -> None:
    for cls in (
        ConfigError,
        TransportError,
        ApiError,
        AuthError,
        RateLimitError,
        ServerError,
        BatchCommandError,
    ):
        assert issubclass(cls, Bitrix24Error)
    assert issubclass(ConfigError, ValueError)
    assert ConfigError("x").permanent
    assert not TransportError("x", maybe_executed=True).permanent


def test_secrets_are_masked_in_str_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3tWebhookCode42"
    register_secret(secret)
    error = TransportError(
        f"connection reset for http://127.0.0.1/rest/1/{secret}/crm.item.add",
        maybe_executed=True,
        method="crm.item.add",
    )
    assert secret not in str(error) and secret not in repr(error) and secret not in error.description
    assert "***" in str(error)
    assert mask(f"a {secret} b") == "a *** b"
    logger = logging.getLogger("test.masking")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO, logger="test.masking"):
        logger.info("calling %s", f"/rest/1/{secret}/x")
    assert secret not in caplog.text and "***" in caplog.text


def test_short_strings_are_not_registered() -> None:
    register_secret("abc")
    assert mask("abc") == "abc"


def test_errors_pickle() -> None:
    error = error_from_response(
        503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many"}, method="batch"
    )
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is RateLimitError and clone.code == "QUERY_LIMIT_EXCEEDED" and clone.http_status == 503
    transport = pickle.loads(pickle.dumps(TransportError("t", maybe_executed=False)))
    assert transport.maybe_executed is False
