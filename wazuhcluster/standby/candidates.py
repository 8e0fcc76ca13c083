# -*- test-case-name: tests.test_standby_candidates -*-
"""
How a worker (and a standby master's link) finds the active master among
the master candidates of C{<nodes>}: it dials them in order, one attempt
at a time; an attempt that fails (nothing listens, TLS fails, the hello is
refused) moves on to the next candidate at once, or straight to the active
master a standby's refusal names.  Only when every candidate of a round
failed does the worker wait its back-off before the next round.

  - L{MasterCandidates}: the order and the round (pure);
  - L{CandidateEndpoint}: an endpoint dialling the current candidate;
  - L{CandidateConnectionCreator}: TLS verifying the master's certificate
    against the candidate dialled (each candidate's certificate names its
    own address).
"""

from attrs import define, field
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from zope.interface import implementer

from wazuhcluster import tls

#: Seconds before the next candidate of a round is dialled.
NEXT_CANDIDATE_DELAY = 0.1

#: Seconds a TCP connect to one of several candidates may take (a host
#: that is down must not hold the others up for long).
CANDIDATE_CONNECT_TIMEOUT = 5


@define
class MasterCandidates:
    """
    The master candidates, in the order of C{<nodes>}, and where this round
    of attempts stands.

    @ivar hosts: the candidates' addresses.
    @ivar index: the candidate the next attempt dials.
    @ivar tried: candidates that failed in the current round.
    @ivar rounds: whole rounds that failed since the last welcome.
    """

    hosts: tuple = field(converter=tuple)
    index: int = 0
    tried: int = 0
    rounds: int = 0

    def __attrs_post_init__(self):
        if not self.hosts:
            raise ValueError("no master candidate")

    @property
    def current(self):
        """
        The address the next attempt dials.
        """
        return self.hosts[self.index]

    @property
    def several(self):
        return len(self.hosts) > 1

    def failed(self, activeHost=None):
        """
        The attempt on L{current} failed: go to C{activeHost} (the active
        master a standby named) when it is another candidate, else to the
        next one.
        """
        self.tried += 1
        if activeHost in self.hosts and activeHost != self.current:
            self.index = self.hosts.index(activeHost)
        else:
            self.index = (self.index + 1) % len(self.hosts)
        if self.tried >= len(self.hosts):
            self.tried = 0
            self.rounds += 1

    def welcomed(self):
        """
        L{current} welcomed us: the next loss starts a new round from it.
        """
        self.tried = 0
        self.rounds = 0

    def retryDelay(self, attempt, backoff):
        """
        Seconds before the next attempt.

        @param attempt: failed attempts in a row, as C{ClientService} counts
            them (a connection refused after the TCP connect resets it).
        @param backoff: the back-off policy (attempts -> seconds).
        """
        if self.tried:
            return NEXT_CANDIDATE_DELAY
        return backoff(max(attempt, self.rounds))


@implementer(IStreamClientEndpoint)
class CandidateEndpoint:
    """
    Dials the current candidate of a L{MasterCandidates}.
    """

    def __init__(self, reactor, candidates, port, endpointFor=None):
        """
        @param endpointFor: makes the endpoint of a host (a
            C{HostnameEndpoint} on C{port} by default).
        """
        self._reactor = reactor
        self._candidates = candidates
        self._port = port
        self._endpointFor = endpointFor or self._hostEndpoint

    def _hostEndpoint(self, host):
        if self._candidates.several:
            return HostnameEndpoint(self._reactor, host, self._port,
                                    timeout=CANDIDATE_CONNECT_TIMEOUT)
        return HostnameEndpoint(self._reactor, host, self._port)

    def connect(self, factory):
        return self._endpointFor(self._candidates.current).connect(factory)


@implementer(IOpenSSLClientConnectionCreator)
class CandidateConnectionCreator:
    """
    The worker's TLS options for the candidate being dialled: the master's
    certificate must name that candidate's address.
    """

    def __init__(self, identity, candidates, revocations=None):
        """
        @param revocations: the L{wazuhcluster.revocation.Revocations} a
            master's certificate is checked against, or L{None}.
        """
        self._identity = identity
        self._candidates = candidates
        self._revocations = revocations
        self._creators = {}

    def clientConnectionForTLS(self, tlsProtocol):
        host = self._candidates.current
        creator = self._creators.get(host)
        if creator is None:
            creator = self._creators[host] = tls.workerConnectionCreator(
                self._identity, host, self._revocations)
        return creator.clientConnectionForTLS(tlsProtocol)
