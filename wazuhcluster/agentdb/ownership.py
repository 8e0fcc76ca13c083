# -*- test-case-name: tests.test_agent_ownership -*-
"""
Which worker may report an agent: the rule the master applies to every
agent-info row before storing it (issue 10: one worker rewrote every
agent).

An honest worker reports only the agents connected to it: it sends a row
when its own wazuh-remoted changed it (a keep-alive, a status change), and
never resends rows already acknowledged.  So a report for an agent whose
C{node_name} is another worker means either that the agent moved (a load
balancer sent it elsewhere) or that the reporter lies.  The rule tells
them apart with what the master itself saw, never with what the report
claims about time:

  1. An agent with no node yet, or already the reporter's, is taken.
  2. An agent whose node is not connected now is moved to the reporter:
     its owner is gone, the agent reports elsewhere.
  3. An agent the report says is C{active} while its stored status (its
     owner's last report) is not is moved: it left its owner and is
     active at the reporter.
  4. Otherwise, an agent whose owner I{holds} it is refused: the row is
     not stored at all.  An owner holds an agent when the master received
     a report of it from that owner within the last
     L{HOLD_PERIODS} x C{worker.keep_alive} seconds, or when the owner
     connected less than that long ago (after a master or worker restart
     the master has not seen its reports yet), or when the owner is the
     master itself.
  5. An agent whose owner has not reported it for that long is moved: the
     owner stopped hearing from it.

A real move therefore happens at once when the old worker is gone or said
the agent disconnected, and within C{HOLD_PERIODS} keep-alive periods when
the old worker merely stopped reporting it.  A lying worker can take only
agents that no connected worker reports as active: exactly what a real
move looks like.  Every move is logged as a WARNING on the master.
"""

from attrs import frozen

#: Keep-alive periods (C{worker.keep_alive}) a report keeps an agent with
#: the worker that sent it.
HOLD_PERIODS = 3

TAKE = "take"
MOVE = "move"
REFUSE = "refuse"


@frozen
class OwnershipRule:
    """
    What the master knew when a chunk arrived, for L{decide}.

    @ivar reporter: the worker that sent the chunk.
    @ivar connected: the nodes connected now (the master included).
    @ivar holding: the nodes that hold every agent stored under their name
        (connected recently, and the master).
    @ivar recent: agent number to the connected node (not the reporter)
        that reported it within the hold period.
    """

    reporter: str
    connected: frozenset
    holding: frozenset
    recent: dict

    def decide(self, number, storedNode, storedStatus, reportedStatus):
        """
        L{TAKE}, L{MOVE} or L{REFUSE} the report of agent C{number} (see
        the module docstring).
        """
        if not storedNode or storedNode == self.reporter:
            return TAKE
        if storedNode not in self.connected:
            return MOVE
        if reportedStatus == "active" and storedStatus != "active":
            return MOVE
        if storedNode in self.holding or self.recent.get(number) == storedNode:
            return REFUSE
        return MOVE


@frozen
class ApplyOutcome:
    """
    What storing one chunk did.

    @ivar updated: rows stored.
    @ivar unknown: rows of agents the master does not know.
    @ivar stored: the numbers of the agents stored.
    @ivar refused: C{(number, owner)} of each agent refused.
    @ivar moved: C{(number, previous node)} of each agent moved to the
        reporter.
    """

    updated: int
    unknown: int
    stored: tuple = ()
    refused: tuple = ()
    moved: tuple = ()


class AgentOwnership:
    """
    The master's memory of who reported which agent when (since the master
    started), and of when each worker connected: one entry per agent the
    master stored, overwritten at each report.
    """

    def __init__(self, clock, masterName, period):
        """
        @param clock: the master's clock.
        @param masterName: the master's node name (it holds its own agents).
        @param period: C{worker.keep_alive}, in seconds.
        """
        self.clock = clock
        self.masterName = masterName
        self.window = HOLD_PERIODS * period
        self._connectedAt = {}
        self._reports = {}

    def connected(self, name, session=None):
        """
        Worker C{name} connected (its agent-info C{session} started).
        """
        self._connectedAt[name] = (self.clock.seconds(), session)

    def disconnected(self, name, session=None):
        """
        Worker C{name}'s connection of C{session} is gone (a newer
        connection of the same name, already started, stays connected).
        """
        entry = self._connectedAt.get(name)
        if entry is not None and entry[1] is session:
            del self._connectedAt[name]

    def rule(self, reporter, numbers):
        """
        The L{OwnershipRule} for a chunk of C{reporter} about the agents
        C{numbers}.
        """
        now = self.clock.seconds()
        connected = frozenset(self._connectedAt) | {self.masterName}
        holding = frozenset(name for name, (since, _) in self._connectedAt.items()
                            if now - since < self.window) | {self.masterName}
        recent = {}
        for number in numbers:
            report = self._reports.get(number)
            if report is None:
                continue
            node, when = report
            if node != reporter and node in connected and now - when <= self.window:
                recent[number] = node
        return OwnershipRule(reporter, connected, holding, recent)

    def reported(self, reporter, numbers):
        """
        The master stored the reports of C{reporter} about C{numbers}.
        """
        now = self.clock.seconds()
        entry = (reporter, now)
        for number in numbers:
            self._reports[number] = entry
