"""
Tests for L{wazuhcluster.tls} and the L{tests.certs} helpers.
"""

import os
import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL.SSL import Error as SSLError
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.certs import makeAuthority, makeNodeSsl, tlsConnectedPair
from wazuhcluster.errors import ClusterError
from wazuhcluster.pki import (
    ensureCertificateAuthority,
    issueNodeCertificate,
    nodeCertificateMatches,
)
from wazuhcluster.tls import (
    NodeIdentity,
    channelBinding,
    helloProof,
    loadNodeIdentity,
    masterContextFactory,
    peerCertificateNames,
    verifyHelloProof,
    workerConnectionCreator,
)


def _statMode(path):
    return stat.S_IMODE(os.stat(path.path).st_mode)


def _loadCert(path):
    return x509.load_pem_x509_certificate(path.getContent())


@implementer(IHandshakeListener)
class _Recorder(Protocol):
    """
    Records what happens on a TLS connection: handshake, peer names,
    channel binding, lost reason.
    """

    handshakeDone = False
    peerNames = None
    binding = None
    lostReason = None

    def handshakeCompleted(self):
        self.handshakeDone = True
        self.peerNames = peerCertificateNames(self.transport)
        self.binding = channelBinding(self.transport)

    def connectionLost(self, reason):
        self.lostReason = reason


def _factory():
    return Factory.forProtocol(_Recorder)


class CertificateAuthorityTests(SynchronousTestCase):
    """
    Tests for L{ensureCertificateAuthority}.
    """

    def setUp(self):
        self.caDir = FilePath(self.mktemp())

    def test_createsFiles(self):
        """
        The CA certificate, its key and the cluster key are created; the CA
        is a critical CA=True certificate allowed to sign certificates.
        """
        ensureCertificateAuthority(self.caDir, "wazuh")
        cert = _loadCert(self.caDir.child("ca.pem"))
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(bc.critical)
        self.assertTrue(bc.value.ca)
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(ku.key_cert_sign)
        self.assertTrue(ku.crl_sign)
        self.assertTrue(self.caDir.child("ca.key").exists())
        key = self.caDir.child("cluster.key").getContent().strip()
        self.assertRegex(key, rb"^[0-9a-f]{32}$")

    def test_secretFileModes(self):
        """
        C{ca.key} and C{cluster.key} are readable by their owner only.
        """
        ensureCertificateAuthority(self.caDir, "wazuh")
        self.assertEqual(_statMode(self.caDir.child("ca.key")), 0o600)
        self.assertEqual(_statMode(self.caDir.child("cluster.key")), 0o600)

    def test_reused(self):
        """
        A second call keeps the existing CA certificate, key and cluster key.
        """
        ensureCertificateAuthority(self.caDir, "wazuh")
        names = ["ca.pem", "ca.key", "cluster.key"]
        before = [self.caDir.child(n).getContent() for n in names]
        ensureCertificateAuthority(self.caDir, "wazuh")
        after = [self.caDir.child(n).getContent() for n in names]
        self.assertEqual(before, after)

    def test_incompleteRefused(self):
        """
        A CA directory holding a certificate but no key is reported, not
        silently replaced.
        """
        ensureCertificateAuthority(self.caDir, "wazuh")
        self.caDir.child("ca.key").remove()
        err = self.assertRaises(
            ClusterError, ensureCertificateAuthority, self.caDir, "wazuh"
        )
        self.assertIn("ca.key", str(err))


class NodeCertificateTests(SynchronousTestCase):
    """
    Tests for L{issueNodeCertificate} and L{loadNodeIdentity}.
    """

    def setUp(self):
        self.caDir = makeAuthority(FilePath(self.mktemp()))
        self.sslDir = FilePath(self.mktemp())
        issueNodeCertificate(
            self.caDir, self.sslDir, "master", ["10.0.0.5", "master.example"], "master"
        )
        self.cert = _loadCert(self.sslDir.child("node.pem"))

    def test_commonName(self):
        """
        The node certificate's common name is the node name, and it is
        issued by the CA.
        """
        cn = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual([a.value for a in cn], ["master"])
        ca = _loadCert(self.caDir.child("ca.pem"))
        self.assertEqual(self.cert.issuer, ca.subject)
        self.cert.verify_directly_issued_by(ca)

    def test_subjectAltNames(self):
        """
        The SANs are the node name as a DNS name, each IP host as an IP
        address and each other host as a DNS name.
        """
        san = self.cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(
            san.get_values_for_type(x509.DNSName), ["master", "master.example"]
        )
        self.assertEqual(
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
            ["10.0.0.5"],
        )

    def test_leafExtensions(self):
        """
        The node certificate is not a CA; a master's may serve as client
        and server.
        """
        bc = self.cert.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertFalse(bc.value.ca)
        eku = self.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        self.assertEqual(
            set(eku.value),
            {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        )

    def test_files(self):
        """
        The SSL directory holds the CA certificate (identical to the CA's),
        the node certificate and the node key (0600) and nothing else: the CA
        key is never copied.
        """
        self.assertEqual(
            sorted(self.sslDir.listdir()), ["ca.pem", "node.key", "node.pem"]
        )
        self.assertEqual(
            self.sslDir.child("ca.pem").getContent(),
            self.caDir.child("ca.pem").getContent(),
        )
        self.assertEqual(_statMode(self.sslDir.child("node.key")), 0o600)
        caKey = self.caDir.child("ca.key").getContent()
        for name in self.sslDir.listdir():
            self.assertNotEqual(self.sslDir.child(name).getContent(), caKey)

    def test_matches(self):
        """
        L{nodeCertificateMatches} accepts the certificate just issued, and
        refuses it for another node name, a host it does not name, another
        role or another CA.
        """
        hosts = ["10.0.0.5", "master.example"]
        matches = nodeCertificateMatches
        self.assertTrue(matches(self.caDir, self.sslDir, "master", hosts, "master"))
        self.assertTrue(matches(self.caDir, self.sslDir, "master", [], "master"))
        self.assertFalse(matches(self.caDir, self.sslDir, "master", [], "worker"))
        self.assertFalse(matches(self.caDir, self.sslDir, "node02", [], "master"))
        self.assertFalse(matches(self.caDir, self.sslDir, "master", ["10.0.0.6"], "master"))
        otherCa = makeAuthority(FilePath(self.mktemp()))
        self.assertFalse(matches(otherCa, self.sslDir, "master", [], "master"))

    def test_loadIdentity(self):
        """
        L{loadNodeIdentity} returns the CA and the node certificate with its
        key.
        """
        identity = loadNodeIdentity(self.sslDir)
        self.assertIsInstance(identity, NodeIdentity)
        cert = identity.certificate.original.to_cryptography()
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual([a.value for a in cn], ["master"])
        self.assertIsNotNone(identity.certificate.privateKey)

    def test_loadMissing(self):
        """
        A missing file is reported as a L{ClusterError} naming the directory.
        """
        self.sslDir.child("node.key").remove()
        err = self.assertRaises(ClusterError, loadNodeIdentity, self.sslDir)
        self.assertIn("Cannot load TLS certificates from", str(err))
        self.assertIn(self.sslDir.path, str(err))

    def test_loadMismatchedKey(self):
        """
        A node key that does not belong to the node certificate is refused.
        """
        other = FilePath(self.mktemp())
        issueNodeCertificate(self.caDir, other, "node02", [], "worker")
        self.sslDir.child("node.key").setContent(
            other.child("node.key").getContent()
        )
        self.assertRaises(ClusterError, loadNodeIdentity, self.sslDir)

    def test_loadGarbage(self):
        """
        A CA file that is not a certificate is refused with a clear error.
        """
        self.sslDir.child("ca.pem").setContent(b"not a certificate")
        err = self.assertRaises(ClusterError, loadNodeIdentity, self.sslDir)
        self.assertIn("Cannot load TLS certificates from", str(err))


class HandshakeTests(SynchronousTestCase):
    """
    Real TLS handshakes in memory between L{masterContextFactory} and
    L{workerConnectionCreator}.
    """

    def setUp(self):
        tmp = FilePath(self.mktemp())
        self.caDir = makeAuthority(tmp)
        self.masterSsl = makeNodeSsl(self.caDir, tmp.child("master"), "master")
        self.workerSsl = makeNodeSsl(self.caDir, tmp.child("worker"), "node02", ())
        self.tmp = tmp

    def connect(self, masterSsl=None, workerSsl=None, host="127.0.0.1", worker=None):
        master = loadNodeIdentity(masterSsl or self.masterSsl)
        if worker is None:
            worker = workerConnectionCreator(
                loadNodeIdentity(workerSsl or self.workerSsl), host
            )
        return tlsConnectedPair(
            _factory(), _factory(), masterContextFactory(master), worker
        )

    def assertConnected(self, pair):
        self.assertTrue(pair.server.handshakeDone)
        self.assertTrue(pair.client.handshakeDone)
        self.assertIsNone(pair.server.lostReason)
        self.assertIsNone(pair.client.lostReason)

    def assertRefused(self, pair):
        self.assertFalse(pair.server.handshakeDone)
        self.assertFalse(pair.client.handshakeDone)
        self.assertIsNotNone(pair.client.lostReason)
        self.assertIsNotNone(pair.server.lostReason)

    def test_sameAuthority(self):
        """
        A worker and a master whose certificates come from the same CA
        connect, by IP address and by DNS name of the master.
        """
        self.assertConnected(self.connect())
        self.assertConnected(self.connect(host="localhost"))

    def test_channelBinding(self):
        """
        Both ends of a connection get the same 32-byte channel binding, and
        two connections get different ones.
        """
        one, two = self.connect(), self.connect()
        self.assertEqual(len(one.client.binding), 32)
        self.assertEqual(one.client.binding, one.server.binding)
        self.assertEqual(two.client.binding, two.server.binding)
        self.assertNotEqual(one.client.binding, two.client.binding)

    def test_peerNames(self):
        """
        The master sees the worker's node name in the worker's certificate,
        and the worker sees the master's.
        """
        pair = self.connect()
        self.assertEqual(pair.server.peerNames, frozenset({"node02"}))
        self.assertEqual(
            pair.client.peerNames, frozenset({"master", "localhost"})
        )

    def test_otherAuthorityRefused(self):
        """
        The master refuses a worker whose certificate comes from another CA.
        """
        otherCa = makeAuthority(self.tmp.child("other"))
        rogue = makeNodeSsl(otherCa, self.tmp.child("rogue"), "node02")
        pair = self.connect(workerSsl=rogue)
        self.assertRefused(pair)
        self.assertTrue(pair.server.lostReason.check(SSLError))

    def test_masterOfOtherAuthorityRefused(self):
        """
        The worker refuses a master whose certificate comes from another CA.
        """
        otherCa = makeAuthority(self.tmp.child("other"))
        rogue = makeNodeSsl(otherCa, self.tmp.child("rogue"), "master")
        pair = self.connect(masterSsl=rogue)
        self.assertRefused(pair)
        self.assertTrue(pair.client.lostReason.check(SSLError))

    def test_wrongHostRefused(self):
        """
        The worker refuses a master whose certificate does not name the host
        the worker dials.
        """
        self.assertRefused(self.connect(host="10.9.9.9"))
        self.assertRefused(self.connect(host="elsewhere.example"))

    def test_noClientCertificateRefused(self):
        """
        The master refuses a client that presents no certificate.
        """
        from twisted.internet.ssl import optionsForClientTLS

        anonymous = optionsForClientTLS(
            "127.0.0.1", trustRoot=loadNodeIdentity(self.workerSsl).authority
        )
        pair = self.connect(worker=anonymous)
        self.assertFalse(pair.server.handshakeDone)
        self.assertIsNotNone(pair.server.lostReason)
        self.assertIsNotNone(pair.client.lostReason)

    def test_peerNamesWithoutCertificate(self):
        """
        L{peerCertificateNames} is empty for a transport without a peer
        certificate.
        """

        class NoCert:
            def getPeerCertificate(self):
                return None

        self.assertEqual(peerCertificateNames(NoCert()), frozenset())
        self.assertEqual(peerCertificateNames(object()), frozenset())

    def test_channelBindingNeedsTLS(self):
        """
        L{channelBinding} raises a clear L{ClusterError} on a transport that
        is not TLS.
        """
        from twisted.internet.testing import StringTransport

        err = self.assertRaises(ClusterError, channelBinding, StringTransport())
        self.assertIn("not TLS", str(err))


class HelloProofTests(SynchronousTestCase):
    """
    Tests for L{helloProof} and L{verifyHelloProof}.
    """

    key = "a" * 32
    binding = bytes(range(32))

    def test_roundTrip(self):
        """
        A proof verifies with the same key, binding, cluster and node name.
        """
        proof = helloProof(self.key, self.binding, "wazuh", "node02")
        self.assertEqual(len(proof), 32)
        self.assertTrue(
            verifyHelloProof(proof, self.key, self.binding, "wazuh", "node02")
        )

    def test_mismatches(self):
        """
        A proof does not verify with another key, binding (another
        connection), cluster name or node name, nor when it is not bytes.
        """
        proof = helloProof(self.key, self.binding, "wazuh", "node02")
        for args in [
            ("b" * 32, self.binding, "wazuh", "node02"),
            (self.key, bytes(32), "wazuh", "node02"),
            (self.key, self.binding, "other", "node02"),
            (self.key, self.binding, "wazuh", "node03"),
        ]:
            self.assertFalse(verifyHelloProof(proof, *args), args)
        self.assertFalse(
            verifyHelloProof("x", self.key, self.binding, "wazuh", "node02")
        )

    def test_unambiguous(self):
        """
        Moving characters between the cluster name and the node name changes
        the proof.
        """
        self.assertNotEqual(
            helloProof(self.key, self.binding, "wazuh", "node02"),
            helloProof(self.key, self.binding, "wazuhn", "ode02"),
        )
