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

from operator import itemgetter

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


def _records(data):
    """
    The records of one chunk, as bytes.

    @raise MalformedChunk: the chunk breaks the framing or a bound.
    """
    try:
        return readRecords([data], maxRecordLength=MAX_CHUNK, maxRecords=MAX_ROWS_PER_CHUNK)
    except RecordError as e:
        raise MalformedChunk(str(e)) from None


def _decoded(record):
    """
    The JSON value of one record.

    @raise MalformedChunk: not (shallow) JSON.
    """
    try:
        return decodeJson(record)
    except RecordError as e:
        raise MalformedChunk(str(e)) from None


def _loadRecords(data):
    """
    The JSON values of one chunk's records.

    @raise MalformedChunk: the chunk breaks the framing, a bound, or holds
        something that is not (shallow) JSON.
    """
    return [_decoded(record) for record in _records(data)]


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


def encodeAgentInfoRow(row):
    """
    The record of a row of L{AgentDatabase.agentInfoToSync} (without its
    C{sync_version}, which stays on the worker), checked as the master will
    check it.

    @return: the record's bytes.
    @raise MalformedChunk: the master would refuse the row (off the wire
        format, or too large for one chunk).
    """
    wire = {key: value for key, value in row.items() if key != "sync_version"}
    try:
        data = encodeItem(wire)
    except (TypeError, ValueError) as e:
        raise MalformedChunk(str(e)) from None
    if len(data) >= MAX_CHUNK:
        raise MalformedChunk(f"{len(data)} bytes, too large")
    _checkedAgentInfo(wire, short=len(data) <= MAX_TEXT)
    return data


def decodeAgentInfo(data):
    """
    Parse and validate an agent-info chunk.

    @type data: L{bytes}
    @return: the rows as L{AgentInfo}, ready for
        L{AgentDatabase.applyAgentInfo} (which does not check them again).
    @raise MalformedChunk: anything off the wire format.
    """
    # A record no longer than MAX_TEXT cannot hold a longer text: its
    # lengths need no check.
    return [_checkedAgentInfo(_decoded(record), short=len(record) <= MAX_TEXT)
            for record in _records(data)]


_TEXT_POSITIONS = tuple(index for index, name in enumerate(AGENT_INFO_FIELDS)
                        if name not in _INT_FIELDS)
_INT_POSITIONS = tuple(index for index, name in enumerate(AGENT_INFO_FIELDS)
                       if name in _INT_FIELDS)
_texts = itemgetter(*_TEXT_POSITIONS)
_TEXT_TYPES = frozenset([str, type(None)])
_STR_TYPE = frozenset([str])


def _checkedAgentInfo(row, short=False):
    """
    Validate one agent-info row.

    @param short: whether the row's record is at most L{MAX_TEXT} bytes
        long (no text in it can be longer).
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
    texts = _texts(values)
    if not (set(map(type, texts)) <= _TEXT_TYPES
            and (short or all(len(value) <= MAX_TEXT for value in texts if value))):
        _invalidField(number, values)
    for index in _INT_POSITIONS:
        value = values[index]
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_INT):
            _invalidField(number, values)
    labels = row.get("labels")
    if labels is not None and not (
        type(labels) is dict
        and len(labels) <= MAX_LABELS
        and set(map(type, labels)) <= _STR_TYPE
        and set(map(type, labels.values())) <= _STR_TYPE
        and "" not in labels
        and (short or all(len(k) <= MAX_TEXT and len(v) <= MAX_TEXT
                          for k, v in labels.items()))
    ):
        raise MalformedChunk(f"agent {number:03d}: invalid labels")
    # The row has "id", maybe "labels", and the columns it carries.
    if len(row) - 1 - ("labels" in row) == len(AGENT_INFO_FIELDS):
        carried = None
    else:
        carried = carriedFields(row)
    return AgentInfo(number, values, labels, carried)


def _invalidField(number, values):
    """
    Name the first invalid column of a row.

    @raise MalformedChunk: always.
    """
    for name, value in zip(AGENT_INFO_FIELDS, values):
        if value is None:
            continue
        if name in _INT_FIELDS:
            if type(value) is not int or not 0 <= value <= MAX_INT:
                break
        elif type(value) is not str or len(value) > MAX_TEXT:
            break
    raise MalformedChunk(f"agent {number:03d}: invalid {name}")


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
