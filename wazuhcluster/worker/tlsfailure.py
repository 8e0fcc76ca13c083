# -*- test-case-name: tests.test_tls_failures -*-
"""
Why a TLS connection between nodes failed, in words an operator can act on
(a raw C{VerificationError(errors=[IPAddressMismatch(...)])} says nothing to
most of them).
"""

from OpenSSL import SSL
from service_identity.exceptions import VerificationError
from twisted.internet.error import ConnectionDone, ConnectionLost

from wazuhcluster.certroles import PeerCertificateRefused


def _sslReasons(error):
    reasons = []
    for entry in getattr(error, "args", [[]])[0] or []:
        if isinstance(entry, tuple) and len(entry) >= 3:
            reasons.append(str(entry[2]))
    return " ".join(reasons).lower()


def describeTLSFailure(failure, masterHost=None, side="worker"):
    """
    One sentence saying why the TLS handshake failed and what to do, or
    L{None} when C{failure} is not a TLS failure.

    @param masterHost: the address the worker dialled (worker side).
    @param side: C{"worker"} or C{"master"}: whose view.
    """
    error = failure.value
    if isinstance(error, PeerCertificateRefused):
        return error.problem
    if isinstance(error, VerificationError):
        return (f"the master's certificate does not name {masterHost!r}, the address "
                f"this worker dials; re-issue it with 'wazuh-cluster init --home MASTER "
                f"--master-host {masterHost} ...' (or dial an address it names)")
    if isinstance(error, SSL.Error):
        reasons = _sslReasons(error)
        if "certificate verify failed" in reasons:
            if side == "worker":
                return ("the master's certificate is not signed by this cluster's CA "
                        "(etc/sslcluster/ca.pem): initialise every node from the same "
                        "--ca directory")
            return ("the worker's certificate is not signed by this cluster's CA "
                    "(etc/sslcluster/ca.pem): initialise every node from the same "
                    "--ca directory")
        if "unknown ca" in reasons or "bad certificate" in reasons:
            peer = "master" if side == "worker" else "worker"
            return (f"the {peer} refused this node's certificate (it is not signed by "
                    f"the {peer}'s CA): initialise every node from the same --ca directory")
        if "peer did not return a certificate" in reasons:
            return "the worker presented no certificate"
        if "wrong version number" in reasons or "http request" in reasons:
            return "the peer does not speak TLS (is it a cluster node?)"
        return f"TLS handshake failed ({reasons or error!r})"
    return None


def describeConnectFailure(failure, masterHost):
    """
    Why a worker's connection attempt failed before the hello was answered,
    in words (a refused hello says why itself).
    """
    described = describeTLSFailure(failure, masterHost, side="worker")
    if described is not None:
        return described
    if failure.check(ConnectionLost, ConnectionDone):
        return ("the master closed the connection before answering the hello (it "
                "refused this node's certificate, revoked or issued before roles, or too "
                "many connections came from this address: the master's cluster.log says "
                "which)")
    return failure.getErrorMessage()
