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

from attrs import frozen
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient

from wazuhcluster.home import NodeHome
from wazuhcluster.pki import ensureCertificateAuthority, issueNodeCertificate


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


def makeNodeSsl(caDir, home_or_ssl_dir, nodeName, hosts=("127.0.0.1", "localhost")):
    """
    Issue a certificate for C{nodeName} from the CA in C{caDir}.

    @param home_or_ssl_dir: a L{NodeHome} (its C{etc/sslcluster} is used) or
        the L{FilePath} of the directory to write C{ca.pem}, C{node.pem} and
        C{node.key} into.
    @return: the directory written.
    @rtype: L{FilePath}
    """
    if isinstance(home_or_ssl_dir, NodeHome):
        sslDir = home_or_ssl_dir.sslDir
    else:
        sslDir = home_or_ssl_dir
    issueNodeCertificate(caDir, sslDir, nodeName, list(hosts))
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
