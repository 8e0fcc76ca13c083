# -*- test-case-name: tests.test_web -*-
"""
The status web service of a node (C{--web [ADDR:]PORT}), with twisted.web.

On a master: C{/} (the live page), C{/status.json}, the Wazuh REST API's
cluster endpoints (L{wazuhcluster.web.wazuhapi}) and C{/metrics}.  On a
worker: the same cluster endpoints (C{/cluster/local/info} and
C{/cluster/status} answered locally, the others forwarded to the master
like C{wazuh-cluster control}) and C{/metrics}.  Optionally behind HTTP
basic authentication (L{wazuhcluster.web.auth}) and TLS with the node's own
certificate.
"""

import socket

from twisted.application.service import MultiService
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from wazuhcluster.control import WorkerControlHandler
from wazuhcluster.listening import ListeningService
from wazuhcluster.metrics import CONTENT_TYPE, AgentCounts, NodeMetrics, storeAgents
from wazuhcluster.web.auth import HashedPasswordChecker, UsersFileError, readUsers
from wazuhcluster.web.history import RecentLog, SeenWorkers, SyncHistory
from wazuhcluster.web.page import Overview, loadPage
from wazuhcluster.web.resource import Query, Raw, WebRoot
from wazuhcluster.web.wazuhapi import ClusterApi

#: The address C{--web PORT} listens on.
DEFAULT_ADDRESS = "127.0.0.1"


def parseWebAddress(spec):
    """
    C{[ADDR:]PORT} (C{[::1]:8080} for an IPv6 address) as C{(address,
    port)}.

    @raise ValueError: saying what is wrong.
    """
    spec = spec.strip()
    host, port = DEFAULT_ADDRESS, spec
    if spec.startswith("["):
        host, bracket, rest = spec[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{spec!r}: write an IPv6 address as [ADDR]:PORT")
        port = rest[1:]
    elif ":" in spec:
        host, _, port = spec.rpartition(":")
        if ":" in host:
            raise ValueError(f"{spec!r}: write an IPv6 address as [ADDR]:PORT")
        host = host or DEFAULT_ADDRESS
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{spec!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def webContextFactory(identity):
    """
    Server TLS options of the web service: the node's own certificate (no
    client certificate asked for), TLS 1.2+.

    @type identity: L{wazuhcluster.tls.NodeIdentity}
    """
    return CertificateOptions(
        privateKey=identity.certificate.privateKey.original,
        certificate=identity.certificate.original,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


class QuietSite(Site):
    """
    A site that keeps no access log (the page asks every 2 seconds) and
    shows no traceback.
    """

    displayTracebacks = False
    noisy = False

    def log(self, request):
        pass


class WebService(MultiService):
    """
    The status service of one node, listening while it runs.

    @ivar port: the listening port once started.
    @ivar url: C{http(s)://host:port/} once listening.
    """

    name = "web"

    def __init__(self, node, host, port, checker=None, tlsOptions=None, reactor=None):
        """
        @param node: a L{wazuhcluster.master.server.MasterService} or a
            L{wazuhcluster.worker.client.WorkerService}.
        @param host: the address to listen on; C{port} 0 for any free one.
        @param checker: an C{ICredentialsChecker} for basic authentication,
            or L{None}.
        @param tlsOptions: server TLS options (L{webContextFactory}), or
            L{None} for plain HTTP.
        """
        super().__init__()
        self.node = node
        self.host = host
        self.url = None
        self.log = node.log.withSubtag("Web")
        reactor = reactor if reactor is not None else node.reactor
        routes = {}
        if node.config.node_type == "master":
            control = node.control
            agentCounts = AgentCounts(storeAgents(node), node.clock, node.runInThread,
                                      self.log)
            self.metrics = NodeMetrics.forMaster(node, agentCounts)
            self.history = SyncHistory()
            recentLog = RecentLog(node.config.node_name)
            recentLog.setServiceParent(self)
            self.page = loadPage()
            routes[""] = self._page
            routes["status.json"] = Overview(node, agentCounts, self.history, recentLog,
                                             SeenWorkers())
        else:
            control = WorkerControlHandler(node, node.agentInfo)
            self.metrics = NodeMetrics.forWorker(node)
            self.history = None
        routes.update(ClusterApi(control, node.config).routes())
        routes["metrics"] = self._metrics
        self.site = QuietSite(WebRoot(routes, checker, self.log))
        self.scheme = "https" if tlsOptions is not None else "http"
        if tlsOptions is not None:
            self.factory = TLSMemoryBIOFactory(tlsOptions, False, self.site)
            self.factory.noisy = False
        else:
            self.factory = WrappingFactory(self.site)
        endpointType = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        self.listener = ListeningService(endpointType(reactor, port, interface=host),
                                         self.factory, self._listening, log=self.log)
        self.listener.setServiceParent(self)

    @property
    def port(self):
        return self.listener.port

    def _page(self, request):
        Query(request)
        return self.page

    def _metrics(self, request):
        Query(request)
        return self.metrics.render().addCallback(
            lambda text: Raw(text, CONTENT_TYPE.encode("ascii")))

    def _listening(self, port):
        address = port.getHost()
        host = f"[{address.host}]" if ":" in address.host else address.host
        self.url = f"{self.scheme}://{host}:{address.port}/"
        self.log.info("Serving the status service on {url}", url=self.url)
        loopback = address.host.startswith("127.") or address.host == "::1"
        if self.site.resource.checker is not None and self.scheme == "http" and not loopback:
            self.log.warn("The status service asks for passwords over plain HTTP on {url}: "
                          "add --web-tls.", url=self.url)
        elif self.site.resource.checker is None and not loopback:
            self.log.warn("The status service on {url} answers anyone who can reach it: "
                          "add --web-users (and --web-tls).", url=self.url)

    def startService(self):
        self.metrics.start()
        if self.history is not None:
            self.node.syncEvents.subscribe(self.history)
        super().startService()

    def stopService(self):
        self.metrics.stop()
        if self.history is not None:
            self.node.syncEvents.unsubscribe(self.history)
        d = super().stopService()
        for protocol in list(self.factory.protocols):
            protocol.transport.loseConnection()
        return d


class WebSetupError(Exception):
    """
    The web service cannot be set up as asked; C{str()} says why in one
    line.
    """


def bindProblem(host, port):
    """
    Why C{host:port} cannot be listened on right now, or L{None} (checked
    before a daemon detaches, so that the user reads the reason).
    """
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as error:
        return f"Cannot serve the status page on {host}:{port}: {error.strerror}."
    finally:
        probe.close()
    return None


def webServiceFor(node, spec, usersPath=None, useTLS=False):
    """
    The L{WebService} of C{--web SPEC [--web-users FILE] [--web-tls]}.

    @raise WebSetupError: for an address that cannot be used or a users
        file that cannot be read.
    """
    try:
        host, port = parseWebAddress(spec)
    except ValueError as e:
        raise WebSetupError(f"--web {e}") from None
    checker = None
    if usersPath:
        try:
            users = readUsers(usersPath)
        except UsersFileError as e:
            raise WebSetupError(str(e)) from None
        checker = HashedPasswordChecker(users, node.runInThread, node.clock)
    problem = bindProblem(host, port)
    if problem is not None:
        raise WebSetupError(problem)
    tlsOptions = webContextFactory(node.identity) if useTLS else None
    return WebService(node, host, port, checker=checker, tlsOptions=tlsOptions)
