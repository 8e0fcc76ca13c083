# -*- test-case-name: tests.test_wazuhlocal_json -*-
"""
The JSON encodings Wazuh uses on its local socket (WAZUH.md section 3.6):

  - an exception: C{{"__wazuh_exception__": {"__class__": "WazuhClusterError",
    "__object__": {"code": 3020, "extra_message": "echo-c"}}}}, the payload
    of every C{err} reply;
  - a result: C{{"__wazuh_result__": {"__class__": ..., "__object__": ...}}};
  - a date: C{{"__wazuh_datetime__": "2026-11-25T10:00:00+00:00"}};
  - an exception of no Wazuh class: C{{"__unhandled_exc__": {"__class__": ...,
    "__args__": [...]}}};
  - a function of a DAPI request: C{{"__callable__": {"__name__": ...,
    "__module__": ..., "__qualname__": ..., "__type__": "function"}}}.

Decoding is for untrusted input: the text is bounded in size, the value in
nesting depth, and the special forms become plain values of this module
(L{WazuhRemoteError}, L{WazuhResult}, L{DapiFunction}, L{datetime}):
nothing is ever imported or evaluated. A function named by a DAPI request is
only a name; the daemon decides which names it answers.
"""

import json
from datetime import datetime

from attrs import frozen

from wazuhcluster.errors import ClusterError

#: Default bound of a decoded text, in bytes.
MAX_JSON_SIZE = 256 * 1024 * 1024

#: Default bound of the nesting of a decoded value.
MAX_JSON_DEPTH = 64

#: Wazuh's texts of the codes this project sends or receives on the local
#: socket (framework/wazuh/core/exception.py, 4.14).
WAZUH_TEXTS = {
    1000: "Wazuh Internal Error",
    1724: "Not a valid select field",
    1728: "Invalid node type",
    1730: "Node does not exist",
    3000: "Cluster",
    3009: "Error executing distributed API request",
    3012: "Cluster is not running",
    3016: "Received an error response",
    3018: "Error sending request",
    3020: "Timeout sending request",
    3021: "Timeout executing API request",
    3022: "Unknown node ID",
    3023: "Worker node is not connected to master",
    3024: "Length of command exceeds limit defined in wazuh.cluster.common.Handler.cmd_len.",
    3032: "Could not forward DAPI request. Connection not available.",
    3035: "String couldn't be found",
    3036: "JSON couldn't be loaded",
}

#: Wazuh's exception classes (framework/wazuh/core/exception.py).
WAZUH_CLASSES = frozenset(
    [
        "WazuhException",
        "WazuhInternalError",
        "WazuhError",
        "WazuhPermissionError",
        "WazuhResourceNotFound",
        "WazuhTooManyRequests",
        "WazuhNotAcceptable",
        "WazuhClusterError",
        "WazuhHAPHelperError",
    ]
)

_MAX_NAME = 256


class MalformedJSON(ClusterError):
    """
    A text that is not valid JSON of the expected form, or beyond the bounds
    (Wazuh's 3036, "JSON couldn't be loaded").
    """

    code = 3036


class WazuhRemoteError(ClusterError):
    """
    An exception a Wazuh peer sent (or one of ours, ready to be sent), with
    the fields of Wazuh's encoding.

    @ivar className: Wazuh's class name (C{WazuhClusterError}).
    @ivar extraMessage: the C{extra_message} (L{None} when absent).
    """

    def __init__(self, code, extraMessage=None, className="WazuhClusterError"):
        base = WAZUH_TEXTS.get(code)
        if base is not None and extraMessage:
            message = f"{base}: {extraMessage}"
        elif base is not None:
            message = base
        else:
            message = extraMessage or f"Wazuh error {code}"
        super().__init__(message, code)
        self.className = className
        self.extraMessage = extraMessage


@frozen
class DapiFunction:
    """
    The function a DAPI request names (C{__callable__}): only names.
    """

    name: str
    module: str
    qualname: str
    type: str = "function"

    @property
    def dottedName(self):
        """
        C{module.qualname}, e.g. C{wazuh.core.agent.Agent.get_agents_overview}.
        """
        return f"{self.module}.{self.qualname}"


@frozen
class WazuhResult:
    """
    A result Wazuh encoded as C{__wazuh_result__}.

    @ivar className: e.g. C{AffectedItemsWazuhResult}.
    @ivar value: the decoded C{__object__}.
    """

    className: str
    value: object


@frozen
class UnhandledException:
    """
    An exception of no Wazuh class (C{__unhandled_exc__}), kept as data.
    """

    className: str
    args: tuple


@frozen
class DapiRequest:
    """
    A decoded C{dapi} request.

    @ivar function: the L{DapiFunction} to run.
    @ivar kwargs: its keyword arguments (C{f_kwargs}), decoded.
    @ivar fromCluster: C{from_cluster}.
    @ivar waitForComplete: C{wait_for_complete}.
    @ivar fields: every field of the request, decoded.
    """

    function: DapiFunction
    kwargs: dict
    fromCluster: bool
    waitForComplete: bool
    fields: dict


# ---------------------------------------------------------------------------
# Encoding


def _className(error):
    if isinstance(error, WazuhRemoteError):
        return error.className
    if error.code == 1000:
        return "WazuhInternalError"
    if 3000 <= error.code < 4000:
        return "WazuhClusterError"
    return "WazuhError"


def _extraMessage(error):
    """
    The C{extra_message} that makes Wazuh print C{error}'s message: the text
    after Wazuh's own text of the code, or the whole message.
    """
    if isinstance(error, WazuhRemoteError):
        return error.extraMessage
    base = WAZUH_TEXTS.get(error.code)
    if base is not None:
        if error.message == base:
            return None
        if error.message.startswith(base + ": "):
            return error.message[len(base) + 2 :]
    return error.message


def exceptionObject(error):
    """
    The JSON value Wazuh makes of an exception.

    @param error: a L{ClusterError} (any other exception is a Wazuh
        internal error, 1000, with its text).
    @rtype: L{dict}
    """
    if not isinstance(error, ClusterError):
        error = WazuhRemoteError(1000, str(error), "WazuhInternalError")
    return {
        "__wazuh_exception__": {
            "__class__": _className(error),
            "__object__": {"code": error.code, "extra_message": _extraMessage(error)},
        }
    }


def encodeError(error):
    """
    The payload of an C{err} reply for C{error}.

    @rtype: L{bytes}
    """
    return dumps(exceptionObject(error))


def callableObject(function):
    """
    The JSON value of a DAPI function.

    @type function: L{DapiFunction}
    """
    return {
        "__callable__": {
            "__name__": function.name,
            "__module__": function.module,
            "__qualname__": function.qualname,
            "__type__": function.type,
        }
    }


def resultObject(result):
    """
    The JSON value of a L{WazuhResult}.
    """
    return {"__wazuh_result__": {"__class__": result.className, "__object__": result.value}}


def _default(value):
    if isinstance(value, DapiFunction):
        return callableObject(value)
    if isinstance(value, WazuhResult):
        return resultObject(value)
    if isinstance(value, datetime):
        return {"__wazuh_datetime__": value.isoformat()}
    if isinstance(value, BaseException):
        return exceptionObject(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value):
    """
    Encode C{value} as Wazuh does (compact), L{DapiFunction},
    L{WazuhResult}, datetimes and exceptions in their special forms.

    @rtype: L{bytes}
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default).encode(
        "utf-8"
    )


# ---------------------------------------------------------------------------
# Decoding


def loads(data, maxSize=MAX_JSON_SIZE, maxDepth=MAX_JSON_DEPTH):
    """
    Decode untrusted JSON, turning Wazuh's special forms into the values of
    this module.

    @type data: L{bytes} or L{str}
    @raise MalformedJSON: not UTF-8, not JSON, over C{maxSize} bytes,
        nested deeper than C{maxDepth}, or a special form that is malformed.
    """
    if len(data) > maxSize:
        raise MalformedJSON(f"JSON couldn't be loaded: {len(data)} bytes, over {maxSize}")
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedJSON(f"JSON couldn't be loaded: {str(e)[:200]}") from None
    return _convert(value, maxDepth)


def _convert(value, maxDepth):
    """
    Check the depth of C{value} and replace special forms, without
    recursion (the depth bound is checked before any deep walk).
    """
    root = [value]
    stack = [(root, 0, value, 1)]
    while stack:
        parent, key, item, depth = stack.pop()
        if not isinstance(item, (list, dict)):
            continue
        if depth > maxDepth:
            raise MalformedJSON(f"JSON couldn't be loaded: nested deeper than {maxDepth}")
        if isinstance(item, list):
            stack.extend((item, i, child, depth + 1) for i, child in enumerate(item))
        else:
            special = _specialKey(item)
            if special is not None:
                # Special forms are small: convert their content first.
                inner = _convert(item[special], maxDepth - depth)
                parent[key] = _decodeSpecial(special, inner)
            else:
                stack.extend((item, k, child, depth + 1) for k, child in item.items())
    return root[0]


_SPECIAL = ("__wazuh_exception__", "__wazuh_result__", "__wazuh_datetime__",
            "__unhandled_exc__", "__callable__")


def _specialKey(item):
    for key in _SPECIAL:
        if key in item:
            if len(item) != 1:
                raise MalformedJSON(f"JSON couldn't be loaded: {key} with other keys")
            return key
    return None


def _text(value, what):
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_NAME:
        raise MalformedJSON(f"JSON couldn't be loaded: invalid {what}")
    return value


def _decodeSpecial(key, inner):
    if key == "__wazuh_datetime__":
        if not isinstance(inner, str) or len(inner) > 64:
            raise MalformedJSON("JSON couldn't be loaded: invalid __wazuh_datetime__")
        try:
            return datetime.fromisoformat(inner)
        except ValueError:
            raise MalformedJSON("JSON couldn't be loaded: invalid __wazuh_datetime__") from None
    if not isinstance(inner, dict):
        raise MalformedJSON(f"JSON couldn't be loaded: invalid {key}")
    if key == "__callable__":
        return DapiFunction(
            _text(inner.get("__name__"), "__name__"),
            _text(inner.get("__module__"), "__module__"),
            _text(inner.get("__qualname__"), "__qualname__"),
            _text(inner.get("__type__", "function"), "__type__"),
        )
    className = _text(inner.get("__class__"), "__class__")
    if key == "__wazuh_result__":
        return WazuhResult(className, inner.get("__object__"))
    if key == "__unhandled_exc__":
        args = inner.get("__args__", [])
        if not isinstance(args, list):
            raise MalformedJSON("JSON couldn't be loaded: invalid __args__")
        return UnhandledException(className, tuple(args))
    return _remoteError(className, inner.get("__object__"))


def _remoteError(className, obj):
    if not isinstance(obj, dict):
        raise MalformedJSON("JSON couldn't be loaded: invalid __object__")
    code = obj.get("code")
    if type(code) is not int or not 0 <= code < 100000:
        raise MalformedJSON("JSON couldn't be loaded: invalid exception code")
    extra = obj.get("extra_message")
    if extra is not None and not isinstance(extra, str):
        extra = json.dumps(extra)[:4096]
    return WazuhRemoteError(code, extra, className)


def decodeError(payload, maxSize=MAX_JSON_SIZE):
    """
    The exception an C{err} reply (or a pushed C{err}) carries. A payload
    that is not Wazuh's encoding (Wazuh's own unknown-command answer is
    plain text) becomes a C{WazuhClusterError} 3000 with the text, as
    Wazuh's C{process_error_from_peer} does.

    @type payload: L{bytes}
    @rtype: L{WazuhRemoteError}
    """
    try:
        value = loads(payload, maxSize=maxSize)
    except MalformedJSON:
        value = None
    if isinstance(value, WazuhRemoteError):
        return value
    if isinstance(value, UnhandledException):
        return WazuhRemoteError(
            1000, f"{value.className}: {' '.join(map(str, value.args))}"[:4096],
            "WazuhInternalError",
        )
    return WazuhRemoteError(3000, payload[:4096].decode("utf-8", errors="replace"))


def decodeDapiRequest(payload, maxSize=MAX_JSON_SIZE):
    """
    Decode the payload of a C{dapi} request.

    @rtype: L{DapiRequest}
    @raise MalformedJSON: the payload is not a DAPI request.
    """
    value = loads(payload, maxSize=maxSize)
    if not isinstance(value, dict) or not isinstance(value.get("f"), DapiFunction):
        raise MalformedJSON("JSON couldn't be loaded: not a distributed API request")
    kwargs = value.get("f_kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise MalformedJSON("JSON couldn't be loaded: invalid f_kwargs")
    flags = {}
    for name in ("from_cluster", "wait_for_complete"):
        flag = value.get(name, False)
        if not isinstance(flag, bool):
            raise MalformedJSON(f"JSON couldn't be loaded: invalid {name}")
        flags[name] = flag
    return DapiRequest(value["f"], kwargs, flags["from_cluster"], flags["wait_for_complete"], value)
