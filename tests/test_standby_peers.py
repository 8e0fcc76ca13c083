# -*- test-case-name: tests.test_standby_peers -*-
"""
Masters as peers: a candidate's own address, and what the active master
checks of a standby's hello.
"""

from twisted.protocols import amp
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.certs import makeAuthority, makeNodeSsl
from tests.cluster import KEY
from tests.standbycluster import StandbyCluster
from wazuhcluster import PROTOCOL_VERSION, __version__, tls
from wazuhcluster.commands import Hello, HelloRejected
from wazuhcluster.home import NodeHome
from wazuhcluster.standby.peers import otherCandidates, ownHost


def identityNaming(testCase, hosts):
    tmp = FilePath(testCase.mktemp())
    tmp.makedirs()
    home = NodeHome(tmp.child("m"))
    home.createLayout()
    makeNodeSsl(makeAuthority(tmp), home, "m", hosts=hosts)
    return tls.loadNodeIdentity(home.sslDir)


class OwnHostTests(SynchronousTestCase):
    """
    L{ownHost} and L{otherCandidates}.
    """

    def test_theOneTheCertificateNames(self):
        """
        A candidate's own address is the entry of C{<nodes>} its
        certificate names (a DNS name or an IP address); the others are the
        rest, in order.
        """
        nodes = ("10.0.0.1", "m2.example", "10.0.0.3")
        self.assertEqual(ownHost(nodes, identityNaming(self, ["m2.example"])), "m2.example")
        self.assertEqual(otherCandidates(nodes, identityNaming(self, ["10.0.0.3"])),
                         ("10.0.0.1", "m2.example"))

    def test_noneNamed(self):
        """
        A certificate naming none of them: the first (a single master).
        """
        self.assertEqual(ownHost(("10.0.0.1",), identityNaming(self, ["other"])), "10.0.0.1")


class StandbyHelloTests(TestCase):
    """
    The active master's checks of a hello saying node type C{master}.
    """

    def setUp(self):
        self.cluster = StandbyCluster(self)
        self.master = self.cluster.startMaster("m1")
        self.cluster.network.advance(1)

    def hello(self, name, hosts, role):
        peer = amp.AMP()
        self.cluster.connectBare(peer, name, hosts=hosts)
        proof = tls.helloProof(KEY, tls.channelBinding(peer.transport), "wazuh", name,
                               role=role)
        results = []
        peer.callRemote(Hello, cluster_name="wazuh", node_name=name, node_type="master",
                        version=__version__, protocol=PROTOCOL_VERSION,
                        proof=proof).addBoth(results.append)
        self.cluster.network.flush()
        self.assertEqual(len(results), 1)
        return results[0]

    def test_certificateMustNameACandidate(self):
        """
        A peer whose certificate names no master candidate (a worker's) is
        refused as a standby with error 3063.
        """
        failure = self.hello("w9", (), "standby")
        failure.trap(HelloRejected)
        self.assertEqual(str(failure.value),
                         "Error 3063 - A standby master's certificate must name one of the "
                         "master candidates of <nodes> (m1.example, m2.example)")

    def test_proofOfAStandby(self):
        """
        A standby's hello must carry a proof made for the role C{standby}: a
        worker's proof is refused (3025).
        """
        failure = self.hello("m2", ("m2.example",), "worker")
        failure.trap(HelloRejected)
        self.assertEqual(str(failure.value), "Error 3025 - Could not decrypt message")

    def test_standbyAccepted(self):
        """
        A candidate with a standby's proof is registered as a standby
        master.
        """
        answer = self.hello("m2", ("m2.example",), "standby")
        self.assertEqual(answer["master_name"], "m1")
        self.assertEqual(self.master.registry.connection("m2").nodeType, "master")
