# -*- test-case-name: tests.test_agentcli,tests.test_localclient,tests.test_agent_sync -*-
"""
Requests to the running daemon of a node home from a short-lived process
without a reactor (the C{agent} commands): refresh the agent groups, send
the agent info now, or any request of Wazuh's local protocol.
"""

import os

from wazuhcluster.blockingclient import callLocalSocket
from wazuhcluster.errors import ClusterError
from wazuhcluster.localserver.base import OWN_COMMANDS


def refreshDaemonGroups(home, timeout=5.0):
    """
    Ask the master daemon, if one is running, to refresh its agent-groups
    cache now (control request C{refresh_agent_groups}), so that a change
    reaches the workers without waiting for C{master.sync_agent_groups}.
    Best effort: without a daemon, or if it does not answer in C{timeout}
    seconds, the periodic refresh does it.

    @return: whether the daemon accepted the request.
    """
    return askLocalDaemon(home, "refresh_agent_groups", timeout)


def requestAgentInfoSync(home, timeout=5.0):
    """
    Ask this node's daemon, if one is running, to send its agent info to the
    master now (control request C{sync_agent_info}), so that a report shows
    on the master without waiting for C{worker.sync_agent_info}.  Best
    effort, like L{refreshDaemonGroups}: a daemon that does not know the
    request answers an error, and the periodic sync does it.

    @return: whether the daemon accepted the request.
    """
    return askLocalDaemon(home, "sync_agent_info", timeout)


def askLocalDaemon(home, request, timeout=5.0):
    """
    Send one of this project's control requests, with no arguments, to the
    daemon of C{home} and wait at most C{timeout} seconds for its answer.

    A blocking client (this process runs no reactor) speaking Wazuh's local
    protocol (L{callLocalDaemon}).

    @param request: the control request name (C{str}).
    @return: C{True} when the daemon answered with a result, C{False} when
        no daemon runs, it answered an error, or it did not answer in time.
    """
    if not os.path.exists(home.controlSocket.path):
        return False
    try:
        callLocalDaemon(home, OWN_COMMANDS.get(request, request.encode("ascii")), b"{}",
                        timeout)
    except ClusterError:
        return False
    return True


def callLocalDaemon(home, command, payload, timeout=5.0):
    """
    Send one request to the daemon of C{home} over its local socket and
    wait for its answer, blocking (L{callLocalSocket}).

    @return: the answer's payload (L{bytes}).
    @raise ClusterError: 3012 when no daemon answers, 3020 without an
        answer in C{timeout} seconds, the daemon's error otherwise.
    """
    return callLocalSocket(home.controlSocket.path, command, payload, timeout)
