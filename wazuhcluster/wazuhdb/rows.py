# -*- test-case-name: tests.test_wazuhdb_store -*-
"""
Agent rows between wazuh-db's shapes and the agent store's
(L{wazuhcluster.agentstore}): pure functions.

  - wazuh-db rows (C{get-agent-info}, C{sync-agent-info-get}, the
    C{syncreq} list of C{GET /v1/agents/sync}): numeric C{id}, nulls left
    out, labels (when present) as C{[{"key": k, "value": v}]};
  - agent-info rows of the store: C{id} as 3 digits, every column of
    L{AGENT_INFO_FIELDS} (L{None} when unknown), C{labels} a dict or
    L{None} (unknown: keep the stored ones);
  - full rows for C{global sync-agent-info-set}: every column the command
    writes (wazuh-db refuses partial rows: NOT NULL constraint failed).
"""

import json
from datetime import datetime, timezone

from wazuhcluster.agentdb import AGENT_INFO_FIELDS, CONNECTION_STATUSES, AgentInfo
from wazuhcluster.clientkeys import formatAgentId, parseAgentId

_INT_FIELDS = frozenset(["last_keepalive", "disconnection_time", "status_code"])

#: The columns C{global sync-agent-info-set} writes (every other is kept).
SET_COLUMNS = (
    "config_sum", "ip", "manager_host", "merged_sum", "name", "node_name", "os_arch",
    "os_build", "os_codename", "os_major", "os_minor", "os_name", "os_platform", "os_uname",
    "os_version", "version", "last_keepalive", "connection_status", "disconnection_time",
    "group_config_status", "status_code",
)

#: The lists of C{GET /v1/agents/sync}.
SYNC_LISTS = ("syncreq", "syncreq_keepalive", "syncreq_status")

#: Longest text accepted from wazuh-db in a column.
MAX_TEXT = 4096


class BadRow(ValueError):
    """
    A row that does not have the expected shape.
    """


def agentNumber(value):
    """
    An agent number from wazuh-db (an int) or from the store (C{"001"}).

    @raise BadRow: not a valid agent ID.
    """
    try:
        number = parseAgentId(value)
    except (ValueError, TypeError):
        raise BadRow(f"invalid agent ID {value!r:.40}") from None
    return number


def labelsFromWazuh(labels):
    """
    wazuh-db's C{[{"key": k, "value": v}]} (or a dict) as a dict.
    """
    if labels is None:
        return None
    if isinstance(labels, dict):
        items = labels.items()
    elif isinstance(labels, list) and all(isinstance(i, dict) for i in labels):
        items = [(i.get("key"), i.get("value")) for i in labels]
    else:
        raise BadRow("invalid labels")
    result = {}
    for key, value in items:
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadRow("invalid labels")
        result[key] = value
    return result


def labelsToWazuh(labels):
    """
    A labels dict as wazuh-db's list.
    """
    return [{"key": key, "value": value} for key, value in sorted(labels.items())]


def _checkedValue(name, value):
    if value is None:
        return None
    if name in _INT_FIELDS:
        if type(value) is not int or value < 0:
            raise BadRow(f"invalid {name} {value!r:.40}")
    elif not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BadRow(f"invalid {name} {value!r:.40}")
    return value


def infoFromWazuh(row):
    """
    The agent-info row of a wazuh-db row.

    @raise BadRow: the row is malformed.
    """
    if not isinstance(row, dict):
        raise BadRow("a row is not an object")
    info = {name: _checkedValue(name, row.get(name)) for name in AGENT_INFO_FIELDS}
    if info["connection_status"] not in CONNECTION_STATUSES:
        raise BadRow(f"invalid connection_status {info['connection_status']!r:.40}")
    info["id"] = formatAgentId(agentNumber(row.get("id")))
    info["labels"] = labelsFromWazuh(row.get("labels"))
    return info


def checkedInfo(row):
    """
    Validate one agent-info row given to the store (a dict, or an
    L{AgentInfo} already validated).

    @return: C{(number, fields, labels)}, C{fields} a dict of the
        L{AGENT_INFO_FIELDS} the row carries.
    @raise ValueError: the row is malformed.
    """
    if isinstance(row, AgentInfo):
        fields = dict(zip(AGENT_INFO_FIELDS, row.values, strict=True))
        if row.carried is not None:
            fields = {name: value for name, value in fields.items() if name in row.carried}
        return row.number, fields, row.labels
    if not isinstance(row, dict):
        raise BadRow("a row is not an object")
    number = agentNumber(row.get("id"))
    fields = {name: _checkedValue(name, row.get(name)) for name in AGENT_INFO_FIELDS
              if name in row}
    if row.get("connection_status") not in CONNECTION_STATUSES:
        raise BadRow(f"agent {number}: invalid connection_status")
    labels = row.get("labels")
    if labels is not None:
        labels = labelsFromWazuh(labels)
    return number, fields, labels


def fullRow(current, number, fields, labels, nodeName):
    """
    The full row C{global sync-agent-info-set} needs: the stored row
    C{current} (from C{get-agent-info}) with the received columns over it
    (a column not received keeps its value).
    A received text of L{None} clears the column, a received integer of
    L{None} keeps the stored one (as the SQLite store does), C{node_name}
    is the worker's, labels are replaced only when received.
    """
    row = {column: current.get(column) for column in SET_COLUMNS}
    for name, value in fields.items():
        if value is None and name in _INT_FIELDS:
            continue
        row[name] = value
    row["node_name"] = nodeName
    if row.get("group_config_status") is None:
        row["group_config_status"] = "not synced"
    if row.get("status_code") is None:
        row["status_code"] = 0
    result = {"id": number}
    result.update(row)
    if labels is not None:
        result["labels"] = labelsToWazuh(labels)
    return result


def listedAgent(row):
    """
    The public form of a wazuh-db row (L{IAgentStore.listAgents}).
    """
    alive = row.get("last_keepalive")
    return {
        "id": formatAgentId(row["id"]),
        "name": row.get("name"),
        "ip": row.get("ip") or row.get("register_ip"),
        "status": row.get("connection_status"),
        "version": row.get("version"),
        "node_name": row.get("node_name"),
        "groups": row["group"].split(",") if row.get("group") else [],
        "os_name": row.get("os_name"),
        "os_version": row.get("os_version"),
        "last_keepalive": datetime.fromtimestamp(alive, timezone.utc).isoformat()
        if alive else None,
    }


def chunked(items, encode, maxBytes):
    """
    Split C{items} into lists whose C{encode}d form stays under
    C{maxBytes} (an item alone over it is a list of its own).
    """
    chunk, size = [], 2
    for item in items:
        length = len(encode(item)) + 1
        if chunk and size + length > maxBytes:
            yield chunk
            chunk, size = [], 2
        chunk.append(item)
        size += length
    if chunk:
        yield chunk


def iterSyncLists(text):
    """
    Read the body of C{GET /v1/agents/sync} one element at a time (never a
    whole big document in one C call, so a thread running this lets the
    reactor thread run).

    @type text: L{str}
    @return: C{{list name: [element, ...]}}.
    @raise BadRow: the body is not a JSON object of lists.
    """
    decoder = json.JSONDecoder()
    result = {}
    position = _skip(text, 0)
    if not text.startswith("{", position):
        raise BadRow("the body is not an object")
    position = _skip(text, position + 1)
    if text.startswith("}", position):
        return result
    while True:
        try:
            key, position = decoder.raw_decode(text, position)
        except ValueError:
            raise BadRow("invalid key") from None
        position = _skip(text, position)
        if not isinstance(key, str) or not text.startswith(":", position):
            raise BadRow("invalid object")
        position = _skip(text, position + 1)
        if not text.startswith("[", position):
            raise BadRow(f"{key[:40]!r} is not a list")
        elements, position = _readArray(decoder, text, position)
        result[key] = elements
        position = _skip(text, position)
        if text.startswith("}", position):
            if _skip(text, position + 1) != len(text):
                raise BadRow("trailing data")
            return result
        if not text.startswith(",", position):
            raise BadRow("invalid object")
        position = _skip(text, position + 1)


def _readArray(decoder, text, position):
    elements = []
    position = _skip(text, position + 1)
    if text.startswith("]", position):
        return elements, position + 1
    while True:
        try:
            element, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            raise BadRow("invalid element") from None
        elements.append(element)
        position = _skip(text, position)
        if text.startswith("]", position):
            return elements, position + 1
        if not text.startswith(",", position):
            raise BadRow("invalid list")
        position = _skip(text, position + 1)


def _skip(text, position):
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
