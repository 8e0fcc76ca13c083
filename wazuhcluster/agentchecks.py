# -*- test-case-name: tests.test_agentcli -*-
"""
The checks of what a user gives the C{wazuh-cluster agent} commands (agent
names, IPs, IDs, groups, labels) and of the node they run on, as
L{ClusterError}s with Wazuh's codes.
"""

from wazuhcluster.clientkeys import (
    MAX_NAME_LENGTH,
    formatAgentId,
    isValidAgentIp,
    isValidAgentName,
    parseAgentId,
)
from wazuhcluster.errors import ClusterError


def requireMaster(config, what):
    """
    @raise ClusterError: 3019, as Wazuh's tools do on a worker.
    """
    if config.node_type != "master" and not config.disabled:
        raise ClusterError(
            f"Wazuh is running in cluster mode: agent {what} is not available "
            f"in worker nodes. Please, try again in the master node: "
            f"{config.masterHost}",
            3019,
        )


def checkGroups(home, groups):
    """
    @raise ClusterError: 1710 for a group that is not a directory of
        C{etc/shared/}.
    """
    for group in groups:
        if (
            not group
            or group in (".", "..")
            or "/" in group
            or not home.shared.child(group).isdir()
        ):
            raise ClusterError(f"The group does not exist: {group}", 1710)


def parseId(agentId):
    """
    An agent ID as given, in its 3-digit form (C{"7"} is C{"007"}).

    @raise ClusterError: 1701 when it is not an agent ID.
    """
    try:
        return formatAgentId(parseAgentId(agentId))
    except ValueError:
        raise ClusterError(f"Agent does not exist: {agentId}", 1701) from None


def checkNewAgent(name, ip):
    """
    @raise ClusterError: 1738 for a long name, 1725 for an invalid one,
        1706 for an invalid IP.
    """
    if len(name) > MAX_NAME_LENGTH:
        raise ClusterError(
            f"Agent name is too long: at most {MAX_NAME_LENGTH} characters", 1738
        )
    if not isValidAgentName(name):
        raise ClusterError(
            f"Error registering a new agent: invalid name {name!r} (letters, "
            "digits, '_', '.' and '-' only)",
            1725,
        )
    if not isValidAgentIp(ip):
        raise sameIpOrInvalid(ip)


def sameIpOrInvalid(ip):
    """
    Wazuh's 1706, for an invalid IP and for one another agent has.
    """
    return ClusterError(
        f"There is an agent with the same IP or the IP is invalid: {ip}", 1706
    )


def parseLabels(labels):
    """
    @raise ClusterError: a label is not C{key=value} with a non-empty key.
    """
    result = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key.strip():
            raise ClusterError(f"Invalid label {label!r}: expected key=value", 1000)
        result[key.strip()] = value
    return result
