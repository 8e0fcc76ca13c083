# -*- test-case-name: tests.test_standby_candidates -*-
"""
How a worker walks through the master candidates of C{<nodes>}.
"""

from twisted.internet.defer import succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.certs import makeAuthority, makeNodeSsl
from wazuhcluster.home import NodeHome
from wazuhcluster.standby.candidates import (
    NEXT_CANDIDATE_DELAY,
    CandidateConnectionCreator,
    CandidateEndpoint,
    MasterCandidates,
)
from wazuhcluster.tls import loadNodeIdentity


def backoff(attempt):
    return 10.0 * attempt


class MasterCandidatesTests(SynchronousTestCase):
    """
    L{MasterCandidates}: order, jumps, rounds, delays.
    """

    def test_inOrder(self):
        """
        A failed attempt moves to the next candidate, at once while the round
        has candidates left; a whole failed round waits the back-off.
        """
        candidates = MasterCandidates(("a", "b", "c"))
        seen, delays = [], []
        for attempt in range(1, 7):
            seen.append(candidates.current)
            candidates.failed()
            delays.append(candidates.retryDelay(1, backoff))
        self.assertEqual(seen, ["a", "b", "c", "a", "b", "c"])
        self.assertEqual(delays, [NEXT_CANDIDATE_DELAY, NEXT_CANDIDATE_DELAY, 10.0,
                                  NEXT_CANDIDATE_DELAY, NEXT_CANDIDATE_DELAY, 20.0])

    def test_jumpToTheActive(self):
        """
        A standby's refusal naming another candidate sends the next attempt
        there; a name that is no candidate, or the one just dialled, does
        not.
        """
        candidates = MasterCandidates(("a", "b", "c"))
        candidates.failed("c")
        self.assertEqual(candidates.current, "c")
        candidates.failed("elsewhere")
        self.assertEqual(candidates.current, "a")
        candidates.failed("a")
        self.assertEqual(candidates.current, "b")

    def test_welcomeStartsOver(self):
        """
        After a welcome the candidate stays, and the next loss starts a new
        round (the first retry waits the back-off of the attempts counted by
        the service).
        """
        candidates = MasterCandidates(("a", "b"))
        candidates.failed()
        candidates.failed()
        candidates.failed()
        self.assertEqual((candidates.current, candidates.rounds), ("b", 1))
        candidates.welcomed()
        self.assertEqual((candidates.current, candidates.tried, candidates.rounds),
                         ("b", 0, 0))
        self.assertEqual(candidates.retryDelay(1, backoff), 10.0)

    def test_oneCandidate(self):
        """
        With one candidate every failure is a whole round: the back-off as
        before.
        """
        candidates = MasterCandidates(("a",))
        candidates.failed()
        self.assertEqual((candidates.current, candidates.retryDelay(2, backoff)), ("a", 20.0))
        self.assertFalse(candidates.several)

    def test_none(self):
        """
        There is at least one candidate.
        """
        self.assertRaises(ValueError, MasterCandidates, ())


class _Recording:
    def __init__(self, host, dialled):
        self.host = host
        self.dialled = dialled

    def connect(self, factory):
        self.dialled.append(self.host)
        return succeed(factory)


class EndpointAndTLSTests(SynchronousTestCase):
    """
    The endpoint and the TLS options follow the current candidate.
    """

    def test_endpointDialsTheCurrent(self):
        """
        Each connect dials the candidate current at that moment.
        """
        dialled = []
        candidates = MasterCandidates(("a", "b"))
        endpoint = CandidateEndpoint(None, candidates, 1516,
                                     lambda host: _Recording(host, dialled))
        endpoint.connect(object())
        candidates.failed()
        endpoint.connect(object())
        self.assertEqual(dialled, ["a", "b"])

    def test_tlsVerifiesTheCurrent(self):
        """
        The TLS connection is made for the candidate being dialled (its
        certificate must name it): one set of options per candidate.
        """
        tmp = FilePath(self.mktemp())
        tmp.makedirs()
        home = NodeHome(tmp.child("w"))
        home.createLayout()
        makeNodeSsl(makeAuthority(tmp), home, "w", hosts=())
        candidates = MasterCandidates(("a.example", "b.example"))
        creator = CandidateConnectionCreator(loadNodeIdentity(home.sslDir), candidates)

        def connect():
            factory = TLSMemoryBIOFactory(creator, True, Factory.forProtocol(Protocol))
            protocol = factory.buildProtocol(None)
            protocol.makeConnection(StringTransport())
            return protocol._tlsConnection.get_servername()

        self.assertEqual(connect(), b"a.example")
        candidates.failed()
        self.assertEqual(connect(), b"b.example")
        self.assertEqual(sorted(creator._creators), ["a.example", "b.example"])
