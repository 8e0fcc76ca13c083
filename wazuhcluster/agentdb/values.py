# -*- test-case-name: tests.test_agentdb,tests.test_agentdb_agentinfo -*-
"""
The values of the agent database: its constants, agent IDs, group names and
hashes, and the validated agent-info row (L{AgentInfo}).  Everything here is
pure: no SQL, no I/O.
"""

import hashlib
import time
from datetime import datetime, timezone
from typing import NamedTuple, Optional

from wazuhcluster.clientkeys import parseAgentId
from wazuhcluster.errors import ClusterError

#: Values of C{agent.connection_status}.
CONNECTION_STATUSES = ("never_connected", "pending", "active", "disconnected")

#: The operating system columns of C{agent}.
OS_FIELDS = (
    "os_name",
    "os_version",
    "os_major",
    "os_minor",
    "os_codename",
    "os_build",
    "os_platform",
    "os_uname",
    "os_arch",
)

#: The columns an agent-info row carries from a worker to the master (besides
#: C{id}, C{sync_version} and C{labels}). Integer columns are listed in
#: L{INT_FIELDS}; every other one is text.
AGENT_INFO_FIELDS = OS_FIELDS + (
    "version",
    "config_sum",
    "merged_sum",
    "manager_host",
    "last_keepalive",
    "connection_status",
    "disconnection_time",
    "status_code",
)

#: The integer columns of L{AGENT_INFO_FIELDS}: a L{None} keeps the stored
#: value.
INT_FIELDS = frozenset(["last_keepalive", "disconnection_time", "status_code"])

#: The position of C{connection_status} in L{AGENT_INFO_FIELDS}.
STATUS_INDEX = AGENT_INFO_FIELDS.index("connection_status")

#: The group an agent seen active for the first time with no group gets.
DEFAULT_GROUP = "default"

#: Longest group name Wazuh accepts.
MAX_GROUP_NAME_LENGTH = 255


class AgentInfo(NamedTuple):
    """
    One agent-info row already validated and converted (as
    L{wazuhcluster.agentsync.decodeAgentInfo} makes them from a received
    chunk): L{wazuhcluster.agentdb.AgentDatabase.applyAgentInfo} stores it
    without checking it again.

    @ivar number: the agent number.
    @ivar values: the values of L{AGENT_INFO_FIELDS}, in order (L{None}
        for a column the row does not carry).
    @ivar labels: the labels, L{None} when the row has none.
    @ivar carried: the names of the columns the row carries, or L{None}
        when it carries them all (what every worker sends): a column it
        does not carry keeps its stored value.
    """

    number: int
    values: tuple
    labels: Optional[dict]
    carried: Optional[frozenset] = None


def carriedFields(row):
    """
    The L{AgentInfo.carried} of a received row (a dict): L{None} when it
    has every column of L{AGENT_INFO_FIELDS}.
    """
    if len(row) >= len(AGENT_INFO_FIELDS) and all(name in row for name in AGENT_INFO_FIELDS):
        return None
    return frozenset(name for name in AGENT_INFO_FIELDS if name in row)


def groupHash(groups):
    """
    The hash of one agent's group list, like Wazuh's C{group_hash}: the first
    8 hex digits of the SHA-1 of the comma-separated list; L{None} for no
    group.

    @type groups: sequence of L{str}
    """
    if not groups:
        return None
    return hashlib.sha1(",".join(groups).encode("utf-8")).hexdigest()[:8]


def isValidGroupName(name):
    """
    Whether C{name} is a valid group name: letters, digits, C{.}, C{_} and
    C{-}, at most L{MAX_GROUP_NAME_LENGTH} characters, not C{.} or C{..}.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_GROUP_NAME_LENGTH
        and name not in (".", "..")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    )


def normaliseGroups(groups):
    """
    Check group names and drop repeats, keeping the order (the first group
    has the highest priority).

    @raise ClusterError: 1722 for a name Wazuh would refuse.
    @rtype: L{tuple} of L{str}
    """
    result = []
    for name in groups:
        if not isValidGroupName(name):
            raise ClusterError(f"Incorrect format for group_id: {name!r}", 1722)
        if name not in result:
            result.append(name)
    return tuple(result)


def splitGroups(column):
    """
    The list of groups stored in the C{agent.group} column.
    """
    return column.split(",") if column else []


def joinGroups(groups):
    """
    The C{agent.group} column of a group list (L{None} for no group).
    """
    return ",".join(groups) or None


def isoTime(timestamp):
    """
    A stored epoch time as an ISO 8601 UTC string, or L{None} (none stored,
    or one no calendar date has: a worker may report any 64-bit integer).
    """
    if not timestamp:
        return None
    try:
        return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def agentNumber(agentId):
    """
    Parse an agent ID given to the API.

    @raise ClusterError: 1701 for an ID that is not a number.
    """
    try:
        return parseAgentId(agentId)
    except ValueError:
        raise ClusterError(f"Agent does not exist: {agentId!r}", 1701) from None


def epoch(now):
    """
    C{now} as an integer epoch, the current time when L{None}.
    """
    return int(time.time() if now is None else now)


def agentInfoParams(row):
    """
    Validate one agent-info row from a worker (a dict, as
    L{wazuhcluster.agentdb.AgentDatabase.agentInfoToSync} makes them).

    @return: its L{AgentInfo}.
    @raise ValueError: the row is malformed.
    """
    number = parseAgentId(row["id"])
    values = tuple(row.get(name) for name in AGENT_INFO_FIELDS)
    for name, value in zip(AGENT_INFO_FIELDS, values):
        if value is None:
            continue
        expected = int if name in INT_FIELDS else str
        if type(value) is not expected:
            raise ValueError(f"agent {number}: invalid {name} {value!r}")
    if row.get("connection_status") not in CONNECTION_STATUSES:
        raise ValueError(f"agent {number}: invalid connection_status")
    labels = row.get("labels")
    if labels is not None and not (
        isinstance(labels, dict)
        and all(type(k) is str and type(v) is str for k, v in labels.items())
    ):
        raise ValueError(f"agent {number}: invalid labels")
    return AgentInfo(number, values, labels, carriedFields(row))
