# -*- test-case-name: tests.test_tls -*-
"""
Test helpers: cluster certificates made at test time, and real TLS
handshakes in memory.

Typical use::

    caDir = makeAuthority(FilePath(self.mktemp()))
    makeNodeSsl(caDir, masterHome, "master")
    makeNodeSsl(caDir, workerHome, "node02")
    pair = tlsConnectedPair(
        serverFactory, clientFactory,
        masterContextFactory(loadNodeIdentity(masterHome.sslDir)),
        workerConnectionCreator(loadNodeIdentity(workerHome.sslDir), "127.0.0.1"),
    )
    pair.pump.flush()
"""

import datetime

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient

from wazuhcluster.fsutil import atomicWrite
from wazuhcluster.home import NodeHome
from wazuhcluster.pki import ensureCertificateAuthority, issueNodeCertificate

#: The default role of L{makeNodeSsl}: guessed from the node name.
GUESS = "guess"


def makeAuthority(tmpdir, clusterName="wazuh"):
    """
    Create a cluster CA (and cluster key) under C{tmpdir}.

    @type tmpdir: L{FilePath}
    @return: the CA directory, C{tmpdir/ca}.
    @rtype: L{FilePath}
    """
    caDir = tmpdir.child("ca")
    ensureCertificateAuthority(caDir, clusterName)
    return caDir


def makeNodeSsl(caDir, home_or_ssl_dir, nodeName, hosts=("127.0.0.1", "localhost"),
                role=GUESS):
    """
    Issue a certificate for C{nodeName} from the CA in C{caDir}.

    @param home_or_ssl_dir: a L{NodeHome} (its C{etc/sslcluster} is used) or
        the L{FilePath} of the directory to write C{ca.pem}, C{node.pem} and
        C{node.key} into.
    @param role: C{"master"} or C{"worker"}; by default C{"master"} for a
        node name starting with C{master}, else C{"worker"}; L{None} makes a
        certificate as issued before roles existed (L{makeRolelessSsl}).
    @return: the directory written.
    @rtype: L{FilePath}
    """
    if isinstance(home_or_ssl_dir, NodeHome):
        sslDir = home_or_ssl_dir.sslDir
    else:
        sslDir = home_or_ssl_dir
    if role == GUESS:
        role = "master" if nodeName.startswith("master") else "worker"
    if role is None:
        return makeRolelessSsl(caDir, sslDir, nodeName, hosts)
    issueNodeCertificate(caDir, sslDir, nodeName, list(hosts), role)
    return sslDir


def makeRolelessSsl(caDir, sslDir, nodeName, hosts=()):
    """
    Write into C{sslDir} a certificate for C{nodeName} as the CA issued
    them before roles: no role in the subject, for TLS servers and clients.
    """
    caCert = x509.load_pem_x509_certificate(caDir.child("ca.pem").getContent())
    caKey = serialization.load_pem_private_key(caDir.child("ca.key").getContent(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(nodeName)] + [x509.DNSName(h) for h in hosts if h != nodeName]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, nodeName)]))
        .issuer_name(caCert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
        .sign(caKey, hashes.SHA256())
    )
    if not sslDir.isdir():
        sslDir.makedirs()
    atomicWrite(sslDir.child("node.key"), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    atomicWrite(sslDir.child("node.pem"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    atomicWrite(sslDir.child("ca.pem"), caDir.child("ca.pem").getContent(), 0o644)
    return sslDir


@frozen
class TLSPair:
    """
    Two application protocols connected over a real, in-memory TLS
    connection.

    @ivar client: the client's application protocol (its C{transport} is
        the client's TLS protocol).
    @ivar server: the server's application protocol.
    @ivar clientTLS: the client's L{TLSMemoryBIOProtocol}.
    @ivar serverTLS: the server's L{TLSMemoryBIOProtocol}.
    @ivar pump: the L{IOPump} moving bytes; call C{pump.flush()}.
    @ivar clock: the clock the TLS protocols and the pump use.
    """

    client: object
    server: object
    clientTLS: object
    serverTLS: object
    pump: object
    clock: Clock


def tlsConnectedPair(
    serverFactory, clientFactory, serverContext, clientCreator, clock=None
):
    """
    Connect a protocol of C{clientFactory} to one of C{serverFactory} over
    TLS in memory, and run the handshake (one C{pump.flush()}).

    A refused handshake does not raise: the TLS protocols disconnect, and
    the application protocols see C{connectionLost} (or never see
    C{connectionMade} / C{handshakeCompleted}).

    @param serverFactory: the server's application protocol factory.
    @param clientFactory: the client's application protocol factory.
    @param serverContext: server TLS options, e.g. from
        L{wazuhcluster.tls.masterContextFactory}.
    @param clientCreator: client TLS connection creator, e.g. from
        L{wazuhcluster.tls.workerConnectionCreator}.
    @param clock: a L{Clock}; a new one when omitted.
    @rtype: L{TLSPair}
    """
    if clock is None:
        clock = Clock()
    serverTLSFactory = TLSMemoryBIOFactory(
        serverContext, False, serverFactory, clock=clock
    )
    clientTLSFactory = TLSMemoryBIOFactory(
        clientCreator, True, clientFactory, clock=clock
    )
    clientTLS, serverTLS, pump = connectedServerAndClient(
        lambda: serverTLSFactory.buildProtocol(None),
        lambda: clientTLSFactory.buildProtocol(None),
        greet=False,
        clock=clock,
    )
    # Keep the application protocols before flushing: a TLS protocol
    # forgets its wrapped protocol when the connection is lost.
    client, server = clientTLS.wrappedProtocol, serverTLS.wrappedProtocol
    pump.flush()
    return TLSPair(
        client=client,
        server=server,
        clientTLS=clientTLS,
        serverTLS=serverTLS,
        pump=pump,
        clock=clock,
    )
