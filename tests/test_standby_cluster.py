# -*- test-case-name: tests.test_standby_cluster -*-
"""
Masters in standby, in memory (L{tests.standbycluster}): one active
master, standbys refusing hellos with the active master's name and syncing
their files from it, failover when the active master dies or loses its
lock session, the overlap window, switchover.
"""

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.standbycluster import MASTERS, StandbyCluster
from wazuhcluster.clientkeys import ClientKey, formatClientKeys
from wazuhcluster.session import NoSession
from wazuhcluster.standby.items import overlapWindow, serverRelease
from wazuhcluster.standby.items import MastersItems

WINDOW = overlapWindow(MastersItems(**MASTERS))


class _Events:
    """
    The log events emitted during a test.
    """

    def __init__(self, testCase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, level=None):
        return [formatEvent(e) for e in self.events
                if level is None or e.get("log_level") == level]


class _Serving:
    """
    Who serves, sampled at every step of the clock: the longest time two
    masters served at once.
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.overlap = 0.0
        self.longest = 0.0
        self._last = cluster.clock.seconds()

    def sample(self):
        now = self.cluster.clock.seconds()
        if len(self.cluster.active()) > 1:
            self.overlap += now - self._last
            self.longest = max(self.longest, self.overlap)
        else:
            self.overlap = 0.0
        self._last = now
        return False


class StandbyClusterTests(TestCase):
    """
    Two or three master candidates sharing one lock and one agent store.
    """

    def setUp(self):
        self.cluster = StandbyCluster(self)
        self.network = self.cluster.network

    def startBoth(self):
        """
        Start C{m1}, let it take the lock, then start C{m2}, which links to
        it as a standby.
        """
        m1 = self.cluster.startMaster("m1")
        self.network.advance(1)
        m2 = self.cluster.startMaster("m2")
        self.network.advance(3)
        return m1, m2

    def test_oneActiveTheOtherLinked(self):
        """
        The first candidate to poll takes the lock and serves; the second
        stands by and connects to the first as a standby master, whose
        connection has keep-alive and integrity sessions only.
        """
        m1, m2 = self.startBoth()
        self.assertEqual(self.cluster.active(), ["m1"])
        self.assertEqual((m1.standby.arbiter.role, m2.standby.arbiter.role),
                         ("active", "standby"))
        self.assertEqual(m1.registry.names(), ["m2"])
        self.assertEqual(m1.registry.connection("m2").nodeType, "master")
        self.assertEqual(m2.standby.link.connection.name, "m1")
        sessions = m1.registry.connection("m2").sessions.sessions
        kinds = {f.name: isinstance(s, NoSession) for f, s in zip(m1.features, sessions)}
        self.assertEqual(kinds, {"keepalive": False, "integrity": False,
                                 "agent-info": True, "agent-groups": True})

    def test_standbyRefusesNamingTheActive(self):
        """
        A worker that dials the standby first is refused with error 3064
        naming the active master and its address, and is connected to the
        active master a moment later.
        """
        events = _Events(self)
        m1, m2 = self.startBoth()
        self.cluster.addWorker("w1", nodes=("m2.example", "m1.example"))
        self.network.advance(1)
        self.assertEqual(self.cluster.connectedTo("w1"), "m1")
        refusals = [line for line in events.lines(LogLevel.error)
                    if "3064" in line]
        self.assertEqual(refusals, [
            "Could not connect to master: Error 3064 - Master m2 is a standby: the active "
            "master is m1 at m1.example."])
        self.assertEqual(m2.registry.names(), [])

    def test_standbySyncsTheFiles(self):
        """
        A file written on the active master reaches the standby; a file the
        standby has and the active master has not is removed.
        """
        home = self.cluster.makeHome("m2", hosts=("m2.example",), role="master")
        extra = home.root.child("etc").child("rules").child("old.xml")
        extra.setContent(b"stale")
        m1, m2 = self.startBoth()
        rules = self.cluster.homes["m1"].root.child("etc").child("rules")
        rules.child("local_rules.xml").setContent(b"<group name='local'/>\n")
        self.successResultOf(m1.integrity.local.rescanNow())
        m2.standby.link.integrity.check()
        self.network.advance(2)
        target = self.cluster.homes["m2"].root.child("etc").child("rules")
        self.assertEqual(target.child("local_rules.xml").getContent(),
                         b"<group name='local'/>\n")
        self.assertFalse(extra.exists())

    def test_rolesInControl(self):
        """
        On the active master, C{get_nodes} gives the active master role
        C{active} and the standby type C{master}, role C{standby};
        C{get_health} counts only workers as connected nodes and names the
        active master.
        """
        m1, m2 = self.startBoth()
        self.cluster.addWorker("w1")
        self.network.advance(1)
        nodes = self.successResultOf(m1.control.answer("get_nodes", {}))["nodes"]
        self.assertEqual(
            [(n["name"], n["type"], n.get("role"), n["ip"]) for n in nodes],
            [("m1", "master", "active", "m1.example"), ("m2", "master", "standby", "m2.example"),
             ("w1", "worker", None, "10.0.1.1")])
        health = self.successResultOf(m1.control.answer("get_health", {}))
        self.assertEqual(health["n_connected_nodes"], 1)
        self.assertEqual(health["active_master"]["name"], "m1")
        self.assertEqual(health["nodes"]["m2"]["info"]["role"], "standby")

    def test_standbyForwardsControl(self):
        """
        C{get_nodes} on the standby is the active master's answer (the
        whole cluster); while its link is down, the standby answers with
        itself and the active master it knows of.
        """
        m1, m2 = self.startBoth()
        self.cluster.addWorker("w1")
        self.network.advance(1)
        d = m2.control.answer("get_nodes", {})
        self.network.flush()
        names = [(n["name"], n.get("role")) for n in self.successResultOf(d)["nodes"]]
        self.assertEqual(names, [("m1", "active"), ("m2", "standby"), ("w1", None)])
        stopped = m2.standby._stopLink()
        self.network.flush()
        self.successResultOf(stopped)
        nodes = self.successResultOf(m2.control.answer("get_nodes", {}))["nodes"]
        self.assertEqual([(n["name"], n["role"], n["ip"]) for n in nodes],
                         [("m2", "standby", "m2.example"), ("m1", "active", "m1.example")])
        role = self.successResultOf(m2.control.answer("get_master_role", {}))
        self.assertEqual((role["role"], role["serving"], role["active"]["name"]),
                         ("standby", False, "m1"))

    def test_killedActiveFailsOver(self):
        """
        When the active master dies, the standby takes the lock at its next
        poll, stops its link and serves; the worker is connected to it
        within the poll interval plus the worker's retry.
        """
        m1, m2 = self.startBoth()
        self.cluster.addWorker("w1")
        self.network.advance(1)
        self.assertEqual(self.cluster.connectedTo("w1"), "m1")
        self.cluster.killMaster("m1")
        took = self.network.advanceUntil(lambda: self.cluster.connectedTo("w1") == "m2", 15)
        self.assertIsNotNone(took)
        self.assertLessEqual(took, MASTERS["lock_poll_interval"] + 2 + 1)
        self.assertEqual(self.cluster.active(), ["m2"])
        self.assertIsNone(m2.standby.link)

    def test_lostSessionStepsDown(self):
        """
        When the server ends the active master's lock session, the master
        notices at its next check: one ERROR, every worker dropped, it
        stands by and links to the standby that took over.
        """
        events = _Events(self)
        m1, m2 = self.startBoth()
        self.cluster.addWorker("w1")
        self.network.advance(1)
        self.cluster.lockServer.terminate(self.cluster.locks["m1"])
        took = self.network.advanceUntil(lambda: not m1.serving, 5, step=0.05)
        self.assertLessEqual(took, MASTERS["lock_check_interval"] + 0.05)
        self.assertEqual(m1.registry.names(), [])
        self.network.advanceUntil(lambda: self.cluster.connectedTo("w1") == "m2", 15)
        self.network.advance(3)
        errors = [line for line in events.lines(LogLevel.error) if "lock" in line]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("Lost the active master lock", errors[0])
        self.assertEqual(self.cluster.active(), ["m2"])
        self.assertEqual(m1.standby.link.connection.name, "m2")

    def test_terminatedSessionOverlapBounded(self):
        """
        The server ends the active master's session, which frees the lock at
        once: the standby may take it before the active master's next check
        notices, but the two never serve at once for longer than the check
        interval plus the check timeout.
        """
        m1, m2 = self.startBoth()
        serving = _Serving(self.cluster)
        # Right after a check of m1: its next one is a whole interval away,
        # and m2 polls before it.
        m1.standby.arbiter._next.reset(MASTERS["lock_check_interval"])
        m2.standby.arbiter._next.reset(0.5)
        self.cluster.lockServer.terminate(self.cluster.locks["m1"])
        self.network.advanceUntil(
            lambda: serving.sample() or self.cluster.active() == ["m2"], 15, step=0.05)
        self.assertGreater(serving.longest, 0)
        self.assertLessEqual(serving.longest, WINDOW)
        self.assertEqual(self.cluster.active(), ["m2"])

    def test_stuckCheckWindow(self):
        """
        A check that gets no answer (a frozen server, a cut network) counts
        as the lock lost after the check timeout: the active master stops
        serving within the check interval plus the timeout.  The server,
        which does not hear the master any more, frees the lock only after
        its keep-alives gave up, so no two masters ever serve at once.
        """
        m1, m2 = self.startBoth()
        lock = self.cluster.locks["m1"]
        lock.frozen = lock.partitioned = True
        serving = _Serving(self.cluster)
        start = self.cluster.clock.seconds()
        self.network.advanceUntil(lambda: serving.sample() or not m1.serving, 10, step=0.05)
        stopped = self.cluster.clock.seconds() - start
        self.assertLessEqual(stopped, WINDOW + 0.05)
        self.assertEqual(self.cluster.lockServer.holder, lock)
        # The server's keep-alives give the silent session up.
        self.cluster.clock.callLater(
            serverRelease(MastersItems(**MASTERS)) - stopped,
            self.cluster.lockServer.terminate, lock)
        self.network.advanceUntil(
            lambda: serving.sample() or self.cluster.active() == ["m2"], 20, step=0.05)
        self.assertEqual(self.cluster.active(), ["m2"])
        self.assertEqual(serving.longest, 0.0)

    def test_unreachableServerForStandby(self):
        """
        A standby whose polls fail says so once (a WARNING) and keeps
        polling; when the server answers again it says so once more (INFO).
        """
        events = _Events(self)
        m1, m2 = self.startBoth()
        self.cluster.locks["m2"].down = True
        self.network.advance(5)
        self.cluster.locks["m2"].down = False
        self.network.advance(2)
        warnings = [line for line in events.lines(LogLevel.warn) if "PostgreSQL" in line]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("answers again", "\n".join(events.lines(LogLevel.info)))
        self.assertEqual(self.cluster.active(), ["m1"])

    def test_restartedMasterStandsBy(self):
        """
        The former active master, started again, finds the lock held and
        stands by, linked to the new active master.
        """
        m1, m2 = self.startBoth()
        self.cluster.killMaster("m1")
        self.network.advanceUntil(lambda: self.cluster.active() == ["m2"], 10)
        m1 = self.cluster.startMaster("m1")
        self.network.advance(3)
        self.assertEqual(self.cluster.active(), ["m2"])
        self.assertEqual(m1.standby.arbiter.role, "standby")
        self.assertEqual(m2.registry.connection("m1").nodeType, "master")

    def test_stopFreesTheLock(self):
        """
        Stopping the active master (SIGTERM) frees the lock after its
        workers are dropped: the standby serves at its next poll.
        """
        m1, m2 = self.startBoth()
        self.cluster.addWorker("w1")
        self.network.advance(1)
        m1.stopService()
        took = self.network.advanceUntil(lambda: self.cluster.active() == ["m2"], 5)
        self.assertLessEqual(took, MASTERS["lock_poll_interval"] + 0.25)
        self.network.advanceUntil(lambda: self.cluster.connectedTo("w1") == "m2", 10)
        self.assertTrue(self.cluster.locks["m1"].closed)

    def test_standbyDoesNotWriteTheStore(self):
        """
        A standby never reconciles its client.keys into the shared agent
        store; it does when it becomes active.
        """
        m1, m2 = self.startBoth()
        key = ClientKey("007", "web-07", "any", "k" * 64)
        home = self.cluster.homes["m2"]
        home.clientKeys.setContent(formatClientKeys([key]))
        self.network.advance(1)
        ids = [a["id"] for a in self.successResultOf(self.cluster.store.listAgents())]
        self.assertNotIn("007", ids)
        promoted = m2.standby.promote()
        self.network.advance(1)
        self.successResultOf(promoted)
        ids = [a["id"] for a in self.successResultOf(self.cluster.store.listAgents())]
        self.assertIn("007", ids)


class SwitchoverTests(TestCase):
    """
    Handing the active role to a named standby.
    """

    def setUp(self):
        self.cluster = StandbyCluster(self, masters=("m1", "m2", "m3"))
        self.network = self.cluster.network
        self.m1 = self.cluster.startMaster("m1")
        self.network.advance(1)
        self.m2 = self.cluster.startMaster("m2")
        self.m3 = self.cluster.startMaster("m3")
        self.network.advance(3)
        self.cluster.addWorker("w1")
        self.network.advance(1)

    def test_switchover(self):
        """
        The active master stops serving, frees the lock and reserves it for
        the named standby: that one takes it (not the other standby, which
        polls as often), and the worker follows.
        """
        d = self.m1.control.answer("switchover", {"to": "m3"})
        self.network.flush()
        self.assertEqual(self.successResultOf(d), {"from": "m1", "to": "m3"})
        took = self.network.advanceUntil(lambda: self.cluster.active() == ["m3"], 5, step=0.1)
        self.assertIsNotNone(took)
        self.network.advance(3)
        self.assertEqual(self.cluster.active(), ["m3"])
        self.network.advanceUntil(lambda: self.cluster.connectedTo("w1") == "m3", 10)
        self.assertEqual(self.m1.standby.arbiter.role, "standby")

    def test_refusals(self):
        """
        A switchover to this master, to a worker, to an unknown node, or
        asked of a standby, fails with error 3065 and changes nothing.
        """
        for target, expected in [
                ("m1", "Error 3065 - m1 is this master"),
                ("w1", "Error 3065 - w1 is not a standby master connected to m1 "
                       "(connected standbys: m2, m3)"),
                ("nope", "Error 3065 - nope is not a standby master connected to m1 "
                         "(connected standbys: m2, m3)")]:
            failure = self.failureResultOf(self.m1.control.answer("switchover", {"to": target}))
            self.assertEqual(failure.getErrorMessage(), expected)
        failure = self.failureResultOf(self.m2.control.answer("switchover", {"to": "m3"}))
        self.assertEqual(failure.getErrorMessage(),
                         "Error 3065 - m2 is a standby: run switchover on the home of the "
                         "active master (m1)")
        self.network.advance(3)
        self.assertEqual(self.cluster.active(), ["m1"])
