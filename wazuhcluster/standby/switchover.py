# -*- test-case-name: tests.test_failover -*-
"""
C{wazuh-cluster switchover --home H --to NODE}: ask the active master of
home C{H} to hand its role to the standby master C{NODE}
(L{wazuhcluster.standby.control}), then wait until C{NODE} is the active
master, as the former one sees it.

One line on success; on failure one line on stderr and exit status 1.
"""

import time

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from wazuhcluster.commands import ControlFailed
from wazuhcluster.controlclient import NOT_RUNNING, ClusterNotRunning, askDaemon
from wazuhcluster.errors import ClusterError
from wazuhcluster.ossecconf import readClusterConfig
from wazuhcluster.standby.role import SWITCHOVER_CODE

PROGRAM = "wazuh-cluster switchover"

#: Seconds between two questions while waiting for the new active master.
POLL = 0.5


@inlineCallbacks
def switchover(reactor, home, target, timeout, out, clock=time.monotonic):
    """
    Hand the active role over and wait for C{target} to hold it.

    @return: a Deferred firing with the seconds it took.
    @raise ControlFailed: the master refused, or C{target} did not take
        the role within C{timeout} seconds.
    """
    started = clock()
    answer = yield askDaemon(reactor, home, "switchover", {"to": target})
    former = answer["from"]
    while True:
        role = yield askDaemon(reactor, home, "get_master_role", {})
        active = role.get("active") or {}
        if active.get("name") == target:
            return former, clock() - started
        if clock() - started > timeout:
            raise ControlFailed(
                f"Error {SWITCHOVER_CODE} - {former} freed the active master lock, but "
                f"{target} did not take it within {timeout:g} seconds (see its "
                "logs/cluster.log); after the grace period the first standby to poll "
                "takes it")
        yield deferLater(reactor, POLL, lambda: None)


def runSwitchover(home, target, timeout, out, err):
    """
    The C{switchover} command.

    @return: the exit status.
    """
    from wazuhcluster.control import socketAnswers

    config = readClusterConfig(home)
    if config.node_type != "master":
        raise ClusterError(f"{home.root.path} is the home of worker {config.node_name}: "
                           "run switchover on the active master's home", SWITCHOVER_CODE)
    if not home.controlSocket.exists() or not socketAnswers(home.controlSocket.path):
        err.write(f"{PROGRAM}: {NOT_RUNNING}\n")
        return 1

    from twisted.internet.task import react

    status = []

    @inlineCallbacks
    def main(reactor):
        try:
            former, seconds = yield switchover(reactor, home, target, timeout, out)
        except (ClusterNotRunning, ControlFailed, ClusterError) as error:
            text = NOT_RUNNING if isinstance(error, ClusterNotRunning) else str(error)
            err.write(f"{PROGRAM}: {text}\n")
            status.append(1)
            return
        out.write(f"{target} is the active master now (handed over by {former} in "
                  f"{seconds:.1f} seconds).\n")
        status.append(0)

    try:
        react(main)
    except SystemExit:
        pass
    return status[0] if status else 1
