# -*- test-case-name: tests.test_agent_sync -*-
"""
What the agent features of both sides share: the wire format of agent-info
and agent-group chunks, with the strict validation of what a peer sent, and
how a node reconciles client.keys into its agent store.

Agent info (worker -> master, L{wazuhcluster.commands.SendAgentInfo}):

    C{data} holds records (L{wazuhcluster.chunks}), one compact JSON object
    per agent: C{id} (the
    3-digit ID), C{connection_status} (required, one of
    L{wazuhcluster.agentdb.CONNECTION_STATUSES}), any other column of
    L{wazuhcluster.agentdb.AGENT_INFO_FIELDS} (text, or an integer for
    C{last_keepalive}, C{disconnection_time}, C{status_code}; C{null}
    allowed) and C{labels} (an object of text values). No other key is
    accepted; a column a row does not carry keeps the master's value. A round is any number of chunks sent one after the other, the
    last with C{final} set (possibly empty); each chunk is answered
    once it is stored, with how many rows were stored and how many named an
    agent the master does not know.

Agent groups (master -> worker, L{wazuhcluster.commands.SendAgentGroups}):

    C{data} holds records, one compact JSON array C{[id, [group, ...],
    version]} each. A batch
    is any number of chunks, the last with C{final} set, which carries the
    master's group version and global hash after the batch. C{full} (on
    every chunk of the batch) means the batch is the master's whole table.
    The worker applies the batch in one transaction when the final chunk
    arrives and answers it with whether its own global hash now equals the
    master's; earlier chunks are answered at once (C{hash_matches} false).

Every chunk's C{data} is at most L{wazuhcluster.chunks.MAX_CHUNK} bytes, and
holds at most L{MAX_ROWS_PER_CHUNK} records; every JSON record is decoded
with a depth bound.
"""

from wazuhcluster.agentdb import AGENT_INFO_FIELDS, CONNECTION_STATUSES, AgentInfo
from wazuhcluster.agentdb.values import carriedFields
from wazuhcluster.chunks import (
    MAX_CHUNK,
    RecordError,
    decodeJson,
    encodeJson,
    packRecords,
    readRecords,
)
from wazuhcluster.clientkeys import formatAgentId, parseAgentId, readClientKeys

_INT_FIELDS = frozenset(["last_keepalive", "disconnection_time", "status_code"])
_AGENT_INFO_KEYS = frozenset(AGENT_INFO_FIELDS) | {"id", "labels"}

#: Longest text value accepted in an agent-info row.
MAX_TEXT = 4096

#: Largest integer accepted in an agent-info row (SQLite's 64-bit range).
MAX_INT = 2**63 - 1

#: The most rows one chunk may hold (a row is at least about 30 bytes).
MAX_ROWS_PER_CHUNK = 4096

#: The most labels one agent may have.
MAX_LABELS = 256

#: The most groups one assignment may name.
MAX_GROUPS = 128


class MalformedChunk(ValueError):
    """
    A chunk received from a peer does not follow the wire format.
    """


# ---------------------------------------------------------------------------
# Chunking


def encodeItem(item):
    """
    One record of a chunk: a compact JSON value, as ASCII bytes.
    """
    return encodeJson(item)


def packChunks(encoded, limit=MAX_CHUNK):
    """
    Group records into chunks of at most C{limit} bytes.

    @param encoded: an iterable of C{(item, record)}, each record made by
        L{encodeItem} and shorter than C{limit}.
    @return: a list of C{(items, data)}: the items of each chunk and its
        bytes.
    """
    pending = list(encoded)
    chunks = []
    position = 0
    for count, data in packRecords((record for _, record in pending), limit):
        chunks.append(([item for item, _ in pending[position:position + count]], data))
        position += count
    return chunks


def _loadRecords(data):
    """
    The JSON values of one chunk's records.

    @raise MalformedChunk: the chunk breaks the framing, a bound, or holds
        something that is not (shallow) JSON.
    """
    try:
        records = readRecords([data], maxRecordLength=MAX_CHUNK,
                              maxRecords=MAX_ROWS_PER_CHUNK)
        return [decodeJson(record) for record in records]
    except RecordError as e:
        raise MalformedChunk(str(e)) from None


def _agentNumber(value):
    try:
        number = parseAgentId(value)
    except ValueError:
        raise MalformedChunk(f"invalid agent ID {value!r}") from None
    if not isinstance(value, str) or number == 0:
        raise MalformedChunk(f"invalid agent ID {value!r}")
    return number


# ---------------------------------------------------------------------------
# Agent info


def agentInfoRow(row):
    """
    The wire form of a row of L{AgentDatabase.agentInfoToSync} (without its
    C{sync_version}, which stays on the worker).
    """
    return {key: value for key, value in row.items() if key != "sync_version"}


def decodeAgentInfo(data):
    """
    Parse and validate an agent-info chunk.

    @type data: L{bytes}
    @return: the rows as L{AgentInfo}, ready for
        L{AgentDatabase.applyAgentInfo} (which does not check them again).
    @raise MalformedChunk: anything off the wire format.
    """
    return [_checkedAgentInfo(row) for row in _loadRecords(data)]


def checkAgentInfoRow(row):
    """
    Validate one agent-info row (as received, or before sending it).

    @return: the row, its C{id} in the 3-digit form.
    @raise MalformedChunk: the row is off the wire format.
    """
    number = _checkedAgentInfo(row).number
    return dict(row, id=formatAgentId(number))


def _checkedAgentInfo(row):
    """
    Validate one agent-info row.

    @return: its L{AgentInfo}.
    @raise MalformedChunk: the row is off the wire format.
    """
    if not isinstance(row, dict):
        raise MalformedChunk("an agent-info row is not an object")
    if not row.keys() <= _AGENT_INFO_KEYS:
        unexpected = set(row) - _AGENT_INFO_KEYS
        raise MalformedChunk(f"unexpected keys {sorted(unexpected)}")
    number = _agentNumber(row.get("id"))
    if row.get("connection_status") not in CONNECTION_STATUSES:
        raise MalformedChunk(f"agent {number:03d}: invalid connection_status")
    values = tuple(map(row.get, AGENT_INFO_FIELDS))
    for name, value in zip(AGENT_INFO_FIELDS, values):
        if value is None:
            continue
        if name in _INT_FIELDS:
            if type(value) is not int or not 0 <= value <= MAX_INT:
                raise MalformedChunk(f"agent {number:03d}: invalid {name}")
        elif type(value) is not str or len(value) > MAX_TEXT:
            raise MalformedChunk(f"agent {number:03d}: invalid {name}")
    labels = row.get("labels")
    if labels is not None and not (
        isinstance(labels, dict)
        and len(labels) <= MAX_LABELS
        and all(
            type(k) is str and type(v) is str and 0 < len(k) <= MAX_TEXT
            and len(v) <= MAX_TEXT
            for k, v in labels.items()
        )
    ):
        raise MalformedChunk(f"agent {number:03d}: invalid labels")
    return AgentInfo(number, values, labels, carriedFields(row))


# ---------------------------------------------------------------------------
# Agent groups


def groupRow(agentId, groups, version):
    """
    The wire form of one assignment.
    """
    return [agentId, list(groups), version]


def decodeAgentGroups(data):
    """
    Parse and validate an agent-groups chunk.

    @type data: L{bytes}
    @return: C{(id, groups, version)} tuples, ready for
        L{AgentDatabase.applyGroupAssignments}.
    @raise MalformedChunk: anything off the wire format.
    """
    rows = _loadRecords(data)
    checked = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3):
            raise MalformedChunk("an assignment is not [id, groups, version]")
        agentId, groups, version = row
        number = _agentNumber(agentId)
        if not (isinstance(groups, list) and len(groups) <= MAX_GROUPS
                and all(type(g) is str and len(g) <= 255 for g in groups)):
            raise MalformedChunk(f"agent {number:03d}: invalid groups")
        if type(version) is not int or not 0 <= version <= MAX_INT:
            raise MalformedChunk(f"agent {number:03d}: invalid group version")
        checked.append((formatAgentId(number), groups, version))
    return checked


def reconcileClientKeys(database, keysPath, runInThread, log):
    """
    Read C{client.keys} off the reactor thread and bring C{database} in line
    with it (new agents added, removed ones deleted), logging what changed
    and every malformed line.

    @return: a L{Deferred} firing with C{(added, removed)} (two lists of
        IDs), or L{None} if it failed (logged; it never fails).
    """

    def reconcile(result):
        entries, problems = result
        for problem in problems:
            log.warn("{path}: {problem}", path=keysPath.path, problem=problem)
        return database.reconcileClientKeys(entries)

    def reconciled(result):
        added, removed = result
        if added or removed:
            log.info("Agent database updated from client.keys: {added} added, "
                     "{removed} removed.", added=len(added), removed=len(removed))
        return result

    def failed(failure):
        log.error("Could not reconcile client.keys: {error}", error=failure.getErrorMessage())
        return None

    d = runInThread(readClientKeys, keysPath)
    return d.addCallback(reconcile).addCallbacks(reconciled, failed)
