# -*- test-case-name: tests.test_standby_cluster -*-
"""
A master candidate's part in the standby scheme, as a child service of the
master: its L{Arbiter}, and what the master does when its role changes
(L{IRoleHooks}).

  - Standing by: the master refuses every hello with a refusal naming the
    active master, and keeps its synced files the active master's through
    a L{StandbyLink} (started after a poll found another master active).
  - Promoted: the link is stopped (its sessions stopped, its staging
    directory clean), C{client.keys} is reconciled into the shared agent
    store (only an active master writes it), the files are rescanned, and
    only then does the master serve.
  - Demoted: every connection (workers and standbys) is dropped, and their
    sessions stopped (L{wazuhcluster.master.registry.WorkerRegistry.stopAll}).

A master built with the PostgreSQL agent store has one (L{standbyFor}); a
master on SQLite is the only master of its cluster and serves from its
start.
"""

from twisted.application.service import MultiService
from twisted.internet.defer import maybeDeferred, succeed
from zope.interface import implementer

from wazuhcluster.agentdb.stores import readPassword
from wazuhcluster.standby.arbiter import Arbiter, IRoleHooks
from wazuhcluster.standby.candidates import CandidateEndpoint, MasterCandidates
from wazuhcluster.standby.link import StandbyLink
from wazuhcluster.standby.peers import otherCandidates, ownHost
from wazuhcluster.standby.role import ACTIVE, STANDBY, standbyRefusal


def _ignore(failure):
    return None


@implementer(IRoleHooks)
class StandbyService(MultiService):
    """
    The standby part of a master.

    @ivar arbiter: the L{Arbiter}.
    @ivar link: the L{StandbyLink} to the active master while standing by,
        or L{None}.
    @ivar ownHost: this master's address (its entry of C{<nodes>}).
    """

    name = "standby"

    def __init__(self, master, lock, endpointFor=None, durable=True, jitter=None):
        """
        @param lock: the L{wazuhcluster.standby.locksession.ILockSession}.
        @param endpointFor: makes the endpoint of a candidate's address (a
            C{HostnameEndpoint} by default).
        @param durable: whether the link's applied files are fsynced.
        @param jitter: the link's reconnection jitter (random by default).
        """
        super().__init__()
        self.master = master
        config = master.config
        self.ownHost = ownHost(config.nodes, master.identity)
        self.others = otherCandidates(config.nodes, master.identity)
        self.arbiter = Arbiter(lock, self, master.items.masters, master.clock,
                               master.log.withSubtag("Active master"), config.name)
        self.arbiter.setServiceParent(self)
        self.link = None
        self._endpointFor = endpointFor
        self._durable = durable
        self._jitter = jitter

    @property
    def serving(self):
        return self.arbiter.serving

    def refusal(self):
        """
        The L{HelloRejected} a hello gets while this master does not serve.
        """
        return standbyRefusal(self.master.config.node_name, self.arbiter.active)

    def describe(self):
        """
        This master's role and the active master, for C{control} and
        C{switchover}: C{{"name", "role", "serving", "active"}}.
        """
        active = self.arbiter.active
        return {
            "name": self.master.config.node_name,
            "role": ACTIVE if self.arbiter.role == ACTIVE else STANDBY,
            "serving": self.serving,
            "active": active.asJson() if active is not None else None,
        }

    # -- IRoleHooks -----------------------------------------------------------------

    def promote(self):
        master = self.master
        d = self._stopLink()
        d.addCallback(lambda _: master.agents.reconcileClientKeys())
        d.addCallback(lambda _: master.integrity.local.rescanNow().addErrback(_ignore))
        return d

    def demote(self):
        return self.master.registry.stopAll()

    def standingBy(self, active):
        if self.link is None and self.others and self.running:
            self._startLink(active)

    # -- the link ----------------------------------------------------------------------

    def _startLink(self, active):
        master = self.master
        hosts = self.others
        first = hosts.index(active.host) if active is not None and active.host in hosts else 0
        candidates = MasterCandidates(hosts, index=first)
        endpoint = CandidateEndpoint(master.reactor, candidates, master.config.port,
                                     self._endpointFor)
        options = {} if self._jitter is None else {"jitter": self._jitter}
        self.link = StandbyLink(master.home, master.config, master.items, master.identity,
                                reactor=master.reactor, clock=master.clock, endpoint=endpoint,
                                runInThread=master.runInThread, durable=self._durable,
                                candidates=candidates, **options)
        self.link.setServiceParent(self)

    def _stopLink(self):
        link, self.link = self.link, None
        if link is None:
            return succeed(None)
        if link.connection is not None:
            # Abort rather than close: a former active master that cannot be
            # reached would keep a clean close waiting.
            link.connection.disconnect()
        return maybeDeferred(link.disownServiceParent)


def standbyFor(master):
    """
    The L{StandbyService} of C{master} when its agent store is PostgreSQL
    (the lock lives on the same server), else L{None}.
    """
    store = master.items.agentStore
    if store.backend != "postgresql":
        return None
    from wazuhcluster.standby.locksession import PostgresLockSession

    def password():
        path = store.passwordPath(master.home)
        return None if path is None else readPassword(path)

    config = master.config
    lock = PostgresLockSession(store.dsn, password, config.name, config.node_name,
                               ownHost(config.nodes, master.identity), master.items.masters,
                               master.reactor)
    return StandbyService(master, lock)
