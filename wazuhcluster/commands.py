# -*- test-case-name: tests.test_hello -*-
"""
Every AMP command of the cluster, grouped by direction.

Rules (DESIGN.md "Protocol rules"): typed arguments, declared errors, no
value over 64 KiB (large payloads travel as chunks, see L{wazuhcluster.results}).
Before a successful L{Hello} the master answers nothing but L{Hello}.
"""

from twisted.protocols.amp import Command, Integer, String, Unicode

#: The largest chunk of payload one value carries (AMP's limit is 65 535).
MAX_CHUNK = 60000


class HelloRejected(Exception):
    """
    The master refused a worker's hello; the message is the original's error
    text (C{Error 30xx - ...}).
    """


class ControlFailed(Exception):
    """
    A control request failed; the message says why (C{Error 30xx - ...}).
    """


# ---------------------------------------------------------------------------
# worker -> master


class Hello(Command):
    """
    The first command of every worker connection: who the worker is, and a
    proof that it knows the cluster key (an HMAC over the TLS channel binding,
    see L{wazuhcluster.tls.helloProof}), which never reveals the key and is
    worthless on any other connection.
    """

    commandName = b"Hello"
    arguments = [
        (b"cluster_name", Unicode()),
        (b"node_name", Unicode()),
        (b"node_type", Unicode()),
        (b"version", Unicode()),
        (b"protocol", Integer()),
        (b"proof", String()),
    ]
    response = [
        (b"master_name", Unicode()),
        (b"version", Unicode()),
        (b"protocol", Integer()),
    ]
    fatalErrors = {HelloRejected: b"HELLO_REJECTED"}


class KeepAlive(Command):
    """
    Proves the permanent connection is alive; the master records the time.
    """

    commandName = b"KeepAlive"
    arguments = []
    response = [(b"answer", Unicode())]


# ---------------------------------------------------------------------------
# control (a local client -> a node, and a worker -> its master when it
# forwards a control request)


class ControlRequest(Command):
    """
    Run a read-only control request (C{get_nodes}, C{get_health},
    C{get_agents}).  C{arguments} is a JSON object.  The JSON result comes
    back in C{chunks} chunks: the first in C{data}, the others through
    L{FetchResultChunk} with C{result_id}.
    """

    commandName = b"ControlRequest"
    arguments = [(b"request", Unicode()), (b"arguments", Unicode())]
    response = [
        (b"result_id", Unicode()),
        (b"chunks", Integer()),
        (b"data", String()),
    ]
    errors = {ControlFailed: b"CONTROL_FAILED"}


class FetchResultChunk(Command):
    """
    Fetch chunk C{index} (1-based after the inline chunk 0) of a result.
    """

    commandName = b"FetchResultChunk"
    arguments = [(b"result_id", Unicode()), (b"index", Integer())]
    response = [(b"data", String())]
    errors = {ControlFailed: b"CONTROL_FAILED"}
