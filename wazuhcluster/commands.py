# -*- test-case-name: tests.test_hello -*-
"""
Every AMP command of the cluster, grouped by direction.

Rules (DESIGN.md "Protocol rules"): typed arguments, declared errors, no
value over 64 KiB (large payloads travel as chunks, see L{wazuhcluster.results}).
Before a successful L{Hello} the master answers nothing but L{Hello}.
"""

from twisted.protocols.amp import Boolean, Command, Integer, String, Unicode

#: The largest chunk of payload one value carries (AMP's limit is 65 535).
MAX_CHUNK = 60000

#: How many values of file bytes one L{FileData} carries (fewer commands
#: for bulk data; each value stays under AMP's limit).
FILE_DATA_VALUES = 4


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


class SyncRefused(Exception):
    """
    The master refuses a sync request (unknown session, path not in its
    snapshot, snapshot not ready...); the message says why.
    """


class SyncAborted(Exception):
    """
    A transfer or an apply failed on the receiving side; the message says why.
    """


# ---------------------------------------------------------------------------
# integrity (DESIGN.md "Integrity"; the worker drives, the master always wins)
#
#   worker -> master  IntegrityCheck(digest)           one round trip when in sync
#   worker -> master  ManifestChunk(session, i)...      the master's manifest, pipelined
#   worker -> master  RequestFiles(session, paths)...   what the worker lacks or has wrong
#   worker -> master  StartTransfer(session, counts)    the master starts streaming
#   master -> worker  FileData(session, data)...        framed files, a window in flight
#   master -> worker  TransferDone(session)             answered once applied
#   master -> worker  TransferAborted(session, reason)  the master could not send
#   master -> worker  IntegrityChanged(digest)          the master's files changed


class IntegrityCheck(Command):
    """
    Compare the worker's digest with the master's.  When they differ the
    master opens a session on its current snapshot: its manifest is
    C{manifest_chunks} chunks long and holds C{files} files.
    """

    commandName = b"IntegrityCheck"
    arguments = [(b"digest", Unicode())]
    response = [
        (b"in_sync", Boolean()),
        (b"master_digest", Unicode()),
        (b"session", Unicode()),
        (b"manifest_chunks", Integer()),
        (b"files", Integer()),
    ]
    errors = {SyncRefused: b"SYNC_REFUSED"}


class ManifestChunk(Command):
    """
    Chunk C{index} (0-based) of the session's manifest (C{path\\tmd5\\tsize}
    lines, see L{wazuhcluster.integrity.encodeManifest}).
    """

    commandName = b"ManifestChunk"
    arguments = [(b"session", Unicode()), (b"index", Integer())]
    response = [(b"data", String())]
    errors = {SyncRefused: b"SYNC_REFUSED"}


class RequestFiles(Command):
    """
    Ask for files of the session's snapshot (UTF-8 paths joined by
    C{\\n}, at most L{MAX_CHUNK} bytes per call).
    """

    commandName = b"RequestFiles"
    arguments = [(b"session", Unicode()), (b"paths", String())]
    response = []
    errors = {SyncRefused: b"SYNC_REFUSED"}


class StartTransfer(Command):
    """
    The worker has asked for every file it needs; the master starts
    streaming them (possibly none) and ends with L{TransferDone}.  The
    counts are the worker's comparison, for the master's log and health.
    """

    commandName = b"StartTransfer"
    arguments = [
        (b"session", Unicode()),
        (b"missing", Integer()),
        (b"shared", Integer()),
        (b"extra", Integer()),
    ]
    response = [(b"files", Integer()), (b"bytes", Integer())]
    errors = {SyncRefused: b"SYNC_REFUSED"}


class FileData(Command):
    """
    The next bytes of the session's file stream: for each file, a header
    line C{<path>\\t<md5>\\t<size>\\n} then exactly C{size} bytes; files
    follow each other, and a chunk may hold several small files.  The bytes
    are C{data}, then C{data2}... (at most L{FILE_DATA_VALUES} values of at
    most L{MAX_CHUNK} bytes each), in order.
    """

    commandName = b"FileData"
    arguments = [(b"session", Unicode()), (b"data", String())] + [
        (f"data{n}".encode("ascii"), String(optional=True)) for n in range(2, FILE_DATA_VALUES + 1)
    ]
    response = []
    errors = {SyncAborted: b"SYNC_ABORTED"}


class TransferDone(Command):
    """
    The whole stream was sent.  The worker verifies it, applies it
    atomically and answers with what it changed.
    """

    commandName = b"TransferDone"
    arguments = [(b"session", Unicode())]
    response = [
        (b"created", Integer()),
        (b"updated", Integer()),
        (b"deleted", Integer()),
    ]
    errors = {SyncAborted: b"SYNC_ABORTED"}


class TransferAborted(Command):
    """
    The master could not send the stream (a file changed or vanished
    meanwhile); the worker drops what it staged and retries later.
    """

    commandName = b"TransferAborted"
    arguments = [(b"session", Unicode()), (b"reason", Unicode())]
    response = []


class IntegrityChanged(Command):
    """
    The master's synced files changed: its digest is now C{digest}.
    """

    commandName = b"IntegrityChanged"
    arguments = [(b"digest", Unicode())]
    response = []


# ---------------------------------------------------------------------------
# agents (DESIGN.md "Agent info", "Agent groups")


class SendAgentInfo(Command):
    """
    worker -> master: a chunk of agent-info rows (a JSON list of objects
    with the fields of L{wazuhcluster.agentdb.AGENT_INFO_FIELDS}), at most
    L{MAX_CHUNK} bytes.  C{final} closes the round.  The master stores rows
    of agents it knows and counts the others.
    """

    commandName = b"SendAgentInfo"
    arguments = [(b"data", String()), (b"final", Boolean())]
    response = [(b"updated", Integer()), (b"unknown", Integer())]
    errors = {SyncAborted: b"SYNC_ABORTED"}


class SendAgentGroups(Command):
    """
    master -> worker: a chunk of agent-group assignments (a JSON list of
    C{[id, [groups...], version]}).  C{final} ends the batch, which brings
    the worker to C{version} and whose global hash is C{hash}; C{full}
    means the batch is the whole table (agents absent from it have no
    group).
    """

    commandName = b"SendAgentGroups"
    arguments = [
        (b"data", String()),
        (b"version", Integer()),
        (b"hash", Unicode(optional=True)),
        (b"full", Boolean()),
        (b"final", Boolean()),
    ]
    response = [(b"hash_matches", Boolean())]
    errors = {SyncAborted: b"SYNC_ABORTED"}


class RequestFullAgentGroups(Command):
    """
    worker -> master: the worker's global group hash kept differing from the
    master's; send the whole table.
    """

    commandName = b"RequestFullAgentGroups"
    arguments = []
    response = []
