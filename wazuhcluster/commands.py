# -*- test-case-name: tests.test_hello,tests.test_protocol_errors -*-
"""
Every AMP command of the cluster, grouped by direction (protocol version 2).

Rules (DESIGN.md "Protocol rules"): typed arguments, declared errors, no
value over 64 KiB: every bigger value travels as chunks of records
(L{wazuhcluster.chunks}).  Before a successful L{Hello} the master answers
nothing but L{Hello}.  Every command declares L{BadRequest} (the arguments
did not parse: the connection closes) and L{InternalError} (the responder
failed unexpectedly: the connection stays), so no undeclared error ever
reaches AMP (L{wazuhcluster.connection}).
"""

from twisted.protocols.amp import Boolean, Command, Float, Integer, String, Unicode

from wazuhcluster.chunks import MAX_CHUNK  # noqa: F401  (re-exported)

#: How many values of file bytes one L{FileData} carries (fewer commands
#: for bulk data; each value stays under AMP's limit).
FILE_DATA_VALUES = 4


class BadRequest(Exception):
    """
    A command's arguments did not parse; the connection closes.
    """


class InternalError(Exception):
    """
    The peer failed to answer a command (its own error, logged there).
    """

    code = b"INTERNAL_ERROR"


class HelloRejected(Exception):
    """
    The master refused a worker's hello; the message is the original's error
    text (C{Error 30xx - ...}).
    """


class ControlFailed(Exception):
    """
    A control request failed; the message says why (C{Error 30xx - ...}).
    """


class RelayFailed(Exception):
    """
    A request relayed to a daemon of the master (L{SendSync}) failed; the
    message says why (C{Error 1726 - Wazuh authd is not running: ...}).
    """


class SyncRefused(Exception):
    """
    The master refuses a sync request (unknown session, path not in its
    snapshot...); the message says why.
    """


class SyncAborted(Exception):
    """
    A transfer, an apply or a round failed on the receiving side; the
    message says why.
    """


class ClusterCommand(Command):
    """
    The base of every cluster command: the errors every command may answer.
    """

    errors = {InternalError: InternalError.code}
    fatalErrors = {BadRequest: b"BAD_REQUEST"}


# ---------------------------------------------------------------------------
# worker -> master


class Hello(ClusterCommand):
    """
    The first command of every worker connection: who the worker is, and a
    proof that it knows the cluster key (an HMAC over the TLS channel
    binding, see L{wazuhcluster.tls.helloProof}), which never reveals the key
    and is worthless on any other connection.  The master answers with its
    own proof, so the worker knows it talks to a master of its cluster.
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
        (b"proof", String()),
    ]
    fatalErrors = {HelloRejected: b"HELLO_REJECTED"}


class KeepAlive(ClusterCommand):
    """
    Proves the permanent connection is alive; the master records the time,
    and the worker's reactor lag of the last minute (seconds; optional, and
    ignored unless finite and within bounds: L{wazuhcluster.lag.reportedLag}).
    """

    commandName = b"KeepAlive"
    arguments = [(b"lag_max", Float(optional=True)), (b"lag_p99", Float(optional=True))]
    response = [(b"answer", Unicode())]


# ---------------------------------------------------------------------------
# master -> worker


class Ping(ClusterCommand):
    """
    Is this connection alive?  The master asks an older connection of a
    worker name when a newcomer claims the name.
    """

    commandName = b"Ping"
    arguments = []
    response = []


# ---------------------------------------------------------------------------
# control (a worker -> its master when it forwards a control request)


class ControlRequest(ClusterCommand):
    """
    Run a read-only control request (C{get_nodes}, C{get_health},
    C{get_agents}).  C{arguments} is a JSON object.  The JSON result (one
    record) comes back in C{chunks} chunks: the first in C{data}, the others
    through L{FetchResultChunk} with C{result_id}.
    """

    commandName = b"ControlRequest"
    arguments = [(b"request", Unicode()), (b"arguments", Unicode())]
    response = [
        (b"result_id", Unicode()),
        (b"chunks", Integer()),
        (b"data", String()),
    ]
    errors = {ControlFailed: b"CONTROL_FAILED"}


class FetchResultChunk(ClusterCommand):
    """
    Fetch chunk C{index} (1-based after the inline chunk 0) of a result.
    """

    commandName = b"FetchResultChunk"
    arguments = [(b"result_id", Unicode()), (b"index", Integer())]
    response = [(b"data", String())]
    errors = {ControlFailed: b"CONTROL_FAILED"}


class SendSync(ClusterCommand):
    """
    worker -> master: relay the C{sendsync} of a daemon on the worker (authd
    enrolling or removing an agent) to the same daemon on the master, and
    answer its raw reply.  C{daemon_name} is the daemon (C{authd});
    C{message} its JSON request, at most
    L{wazuhcluster.localserver.relay.MAX_MESSAGE} bytes; C{answer} is what
    the daemon answered, unchanged.
    """

    commandName = b"SendSync"
    arguments = [(b"daemon_name", Unicode()), (b"message", String())]
    response = [(b"answer", String())]
    errors = {RelayFailed: b"RELAY_FAILED"}


# ---------------------------------------------------------------------------
# integrity (DESIGN.md "Integrity"; the worker drives, the master always wins)
#
#   worker -> master  IntegrityCheck(digest)            one round trip when in sync;
#                                                       else a delta or the manifest
#   worker -> master  ManifestChunk(session, i)...      more of it, pipelined
#   worker -> master  RequestFiles(session, paths)...   what the worker lacks or has wrong
#   worker -> master  StartTransfer(session, counts)    the master starts streaming
#   master -> worker  FileData(session, data)...        framed files, a window in flight
#   master -> worker  TransferDone(session)             answered once applied
#   master -> worker  TransferAborted(session, reason)  the master could not send
#   master -> worker  IntegrityChanged(digest)          the master's files changed


class IntegrityCheck(ClusterCommand):
    """
    Compare the worker's digest with the master's.  C{base} is the master's
    digest the worker last synced to (its files are that state but for the
    ones it knows differ).  When the digests differ the master opens a
    session on its current snapshot and answers either the changes from
    C{base} (or from the worker's digest) to its own (C{full} false: records
    C{path TAB md5 TAB size}, or C{path TAB -} for a removed file) or, when
    it does not know the worker's digest, its whole manifest (C{full}
    true).  The value has C{entries} records in C{chunks} chunks; the first
    chunk is C{data}.
    """

    commandName = b"IntegrityCheck"
    arguments = [(b"digest", Unicode()), (b"base", Unicode(optional=True))]
    response = [
        (b"in_sync", Boolean()),
        (b"master_digest", Unicode()),
        (b"session", Unicode()),
        (b"full", Boolean()),
        (b"chunks", Integer()),
        (b"entries", Integer()),
        (b"data", String()),
    ]
    errors = {SyncRefused: b"SYNC_REFUSED"}


class ManifestChunk(ClusterCommand):
    """
    Chunk C{index} (1 and up; 0 came with L{IntegrityCheck}) of the
    session's delta or manifest.
    """

    commandName = b"ManifestChunk"
    arguments = [(b"session", Unicode()), (b"index", Integer())]
    response = [(b"data", String())]
    errors = {SyncRefused: b"SYNC_REFUSED"}


class RequestFiles(ClusterCommand):
    """
    Ask for files of the session's snapshot (one path per record, at most
    L{MAX_CHUNK} bytes per call).
    """

    commandName = b"RequestFiles"
    arguments = [(b"session", Unicode()), (b"paths", String())]
    response = []
    errors = {SyncRefused: b"SYNC_REFUSED"}


class StartTransfer(ClusterCommand):
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


class FileData(ClusterCommand):
    """
    The next bytes of the session's file stream (L{wazuhcluster.streams}):
    C{data}, then C{data2}... (at most L{FILE_DATA_VALUES} values of at most
    L{MAX_CHUNK} bytes each), in order.
    """

    commandName = b"FileData"
    arguments = [(b"session", Unicode()), (b"data", String())] + [
        (f"data{n}".encode("ascii"), String(optional=True))
        for n in range(2, FILE_DATA_VALUES + 1)
    ]
    response = []
    errors = {SyncAborted: b"SYNC_ABORTED"}


class TransferDone(ClusterCommand):
    """
    The whole stream was sent.  The worker applies every file that arrived
    whole (each on its own: one that cannot be applied never blocks the
    others) and answers with what it changed and how many files failed.
    """

    commandName = b"TransferDone"
    arguments = [(b"session", Unicode())]
    response = [
        (b"created", Integer()),
        (b"updated", Integer()),
        (b"deleted", Integer()),
        (b"failed", Integer()),
    ]
    errors = {SyncAborted: b"SYNC_ABORTED"}


class TransferAborted(ClusterCommand):
    """
    The master could not send the stream; the worker drops what it staged
    and retries later.
    """

    commandName = b"TransferAborted"
    arguments = [(b"session", Unicode()), (b"reason", Unicode())]
    response = []


class IntegrityChanged(ClusterCommand):
    """
    The master's synced files changed: its digest is now C{digest}.
    """

    commandName = b"IntegrityChanged"
    arguments = [(b"digest", Unicode())]
    response = []


# ---------------------------------------------------------------------------
# agents (DESIGN.md "Agent info", "Agent groups"; L{wazuhcluster.agentsync})


class SendAgentInfo(ClusterCommand):
    """
    worker -> master: a chunk of agent-info rows (one JSON object per
    record).  C{final} closes the round.  The master stores rows of agents
    it knows and counts the others.
    """

    commandName = b"SendAgentInfo"
    arguments = [(b"data", String()), (b"final", Boolean())]
    response = [(b"updated", Integer()), (b"unknown", Integer())]
    errors = {SyncAborted: b"SYNC_ABORTED"}


class SendAgentGroups(ClusterCommand):
    """
    master -> worker: a chunk of agent-group assignments (one JSON array
    C{[id, [groups...], version]} per record).  C{final} ends the batch,
    which brings the worker to C{version} and whose global hash is C{hash};
    C{full} means the batch is the whole table (agents absent from it have
    no group).
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


class RequestFullAgentGroups(ClusterCommand):
    """
    worker -> master: the worker's global group hash kept differing from the
    master's; send the whole table.
    """

    commandName = b"RequestFullAgentGroups"
    arguments = []
    response = []
