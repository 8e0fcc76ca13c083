# -*- test-case-name: tests.test_web -*-
"""
The resource answering every request of the status service: routing by
path, optional HTTP basic authentication, query parameters checked before
use, and answers that are always JSON (but for the page and the metrics),
errors included: C{{"error": CODE, "message": ...}} with a 4xx or 5xx
status, never a traceback page.

A route is a callable taking the request and returning the JSON-able
answer, a L{Raw} body, or a Deferred of either; it never blocks (answers
come from memory or from the nodes' Deferred APIs).
"""

import json
import re

from attrs import frozen
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet.defer import FirstError, maybeDeferred
from twisted.logger import LogLevel
from twisted.web.guard import BasicCredentialFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from wazuhcluster.commands import ControlFailed

JSON = b"application/json; charset=utf-8"

#: The realm named in C{WWW-Authenticate}.
REALM = b"wazuhcluster"

#: Query parameters every route accepts (the Wazuh API's own).
COMMON_PARAMETERS = ("pretty", "wait_for_complete")

#: HTTP status of control errors by Wazuh code.
_CONTROL_STATUS = {1730: 404, 3012: 503, 3023: 503, 3020: 504, 3021: 504, 3038: 400}

_CONTROL_TEXT = re.compile(r"^Error (\d+) - (.*)$", re.S)


class ApiError(Exception):
    """
    A request that cannot be answered: its HTTP status, an error code (the
    Wazuh API's where it has one, else the HTTP status) and a message.
    """

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def badRequest(message, code=400):
    return ApiError(400, code, message)


def controlError(error):
    """
    The L{ApiError} of a L{ControlFailed} (C{Error NNNN - text}).
    """
    match = _CONTROL_TEXT.match(str(error))
    if match is None:
        return ApiError(500, 1000, str(error))
    code = int(match.group(1))
    return ApiError(_CONTROL_STATUS.get(code, 500), code, match.group(2))


@frozen
class Raw:
    """
    A body that is not JSON.
    """

    body: bytes
    contentType: bytes
    headers: tuple = ()


class Query:
    """
    The query parameters of a request, checked against those a route
    accepts.
    """

    def __init__(self, request, accepted=()):
        """
        @raise ApiError: for a parameter the route does not accept, one given
            twice, or one that is not UTF-8.
        """
        self.values = {}
        extra = []
        for key, values in (request.args or {}).items():
            try:
                name = key.decode("utf-8")
                decoded = [value.decode("utf-8") for value in values]
            except UnicodeDecodeError:
                raise badRequest("Query parameters must be UTF-8") from None
            if name not in accepted and name not in COMMON_PARAMETERS:
                extra.append(name)
                continue
            if len(decoded) > 1:
                raise badRequest(f"Query parameter {name} is given more than once")
            self.values[name] = decoded[0]
        if extra:
            shown = ", ".join(sorted(extra)[:10])[:300]
            raise badRequest(f"Extra query parameter(s) {shown} not in spec")
        for name in COMMON_PARAMETERS:
            self.flag(name)

    def get(self, name, default=None):
        return self.values.get(name, default)

    def flag(self, name):
        value = self.values.get(name, "false").lower()
        if value not in ("true", "false", ""):
            raise badRequest(f"{name} must be true or false")
        return value in ("true", "")

    def integer(self, name, default, minimum, maximum):
        value = self.values.get(name)
        if value is None:
            return default
        if (not (value.isascii() and value.isdigit()) or len(value) > 12
                or not minimum <= int(value) <= maximum):
            raise badRequest(f"{name} must be an integer from {minimum} to {maximum}")
        return int(value)

    def names(self, name):
        """
        A comma-separated list (empty values dropped).
        """
        value = self.values.get(name)
        if value is None:
            return []
        return [part.strip() for part in value.split(",") if part.strip()]



def encodeJson(value, pretty=False):
    return (json.dumps(value, indent=2 if pretty else None, sort_keys=False) + "\n").encode(
        "utf-8")


class WebRoot(Resource):
    """
    Dispatches every path of the service to its route.

    @ivar routes: C{{path: route}}, paths without leading or trailing
        slash (C{""} is C{/}).
    """

    isLeaf = True

    def __init__(self, routes, checker=None, log=None):
        """
        @param checker: an C{ICredentialsChecker} of user names and
            passwords, or L{None} for no authentication.
        @param log: where unexpected failures are logged.
        """
        super().__init__()
        self.routes = dict(routes)
        self.checker = checker
        self.log = log
        self._basic = BasicCredentialFactory(REALM)

    def render(self, request):
        finished = []
        request.notifyFinish().addBoth(finished.append)
        d = maybeDeferred(self._authenticate, request)
        d.addCallback(lambda _: self._route(request))
        d.addCallback(self._answered, request, finished)
        d.addErrback(self._failed, request, finished)
        return NOT_DONE_YET

    def _authenticate(self, request):
        if self.checker is None:
            return None
        header = request.getHeader(b"authorization") or b""
        scheme, _, response = header.partition(b" ")
        if scheme.lower() != b"basic":
            raise UnauthorizedLogin()
        try:
            credentials = self._basic.decode(response.strip(), request)
        except LoginFailed:
            raise UnauthorizedLogin() from None
        return self.checker.requestAvatarId(credentials)

    def _route(self, request):
        if request.method not in (b"GET", b"HEAD"):
            raise ApiError(405, 405, "Method not allowed: this service only reads (GET)")
        path = "/".join(segment.decode("utf-8", "replace")
                        for segment in request.postpath).strip("/")
        route = self.routes.get(path)
        if route is None:
            raise ApiError(404, 404, f"Not found: /{path[:200]}")
        return route(request)

    def _answered(self, result, request, finished):
        if isinstance(result, Raw):
            self._send(request, finished, 200, result.body, result.contentType, result.headers)
        else:
            pretty = b"pretty" in (request.args or {}) and request.args[b"pretty"][-1] in (
                b"true", b"")
            self._send(request, finished, 200, encodeJson(result, pretty), JSON)

    def _failed(self, failure, request, finished):
        if failure.check(FirstError):
            failure = failure.value.subFailure
        headers = ()
        if failure.check(ApiError):
            error = failure.value
        elif failure.check(UnauthorizedLogin):
            error = ApiError(401, 401, "Unauthorized: a valid user name and password are needed")
            headers = ((b"www-authenticate", b'Basic realm="' + REALM + b'"'),)
        elif failure.check(ControlFailed):
            error = controlError(failure.value)
        else:
            if self.log is not None:
                self.log.failure("Error answering a web request for {path}", failure,
                                 level=LogLevel.error,
                                 path=request.path[:200].decode("utf-8", "replace"))
            error = ApiError(500, 1000, "Wazuh Internal Error")
        body = encodeJson({"error": error.code, "message": error.message})
        self._send(request, finished, error.status, body, JSON, headers)

    def _send(self, request, finished, status, body, contentType, headers=()):
        if finished:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", contentType)
        request.setHeader(b"content-length", b"%d" % len(body))
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        for name, value in headers:
            request.setHeader(name, value)
        if request.method != b"HEAD":
            request.write(body)
        request.finish()
