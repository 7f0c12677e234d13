"""Errors that services raise and every interface (API, CLI, UI) shows the same way."""

from __future__ import annotations


class EinlassError(Exception):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class NotFound(EinlassError):
    status_code = 404
    code = "resource_missing"


class Conflict(EinlassError):
    status_code = 409
    code = "resource_conflict"


class InvalidInput(EinlassError):
    code = "parameter_invalid"


class AuthenticationFailed(EinlassError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"
