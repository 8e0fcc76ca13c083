# -*- test-case-name: tests.test_checkconfig -*-
"""
Checking a node's TLS identity (C{etc/sslcluster/}) before it starts, with
one line per problem: what C{check-config} prints and what stops the twistd
plugins.

The runtime loads the identity with L{wazuhcluster.tls.loadNodeIdentity};
on top of what that load refuses (missing files, garbage, a key that does
not match the certificate), a node also needs its certificate signed by the
cluster CA, valid now, naming the node (the master checks the name a worker
claims against it), of the role of the node's type (L{wazuhcluster.certroles}:
peers refuse any other), and, on a master, naming the host workers dial.
"""

import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from wazuhcluster.certroles import certificateRole
from wazuhcluster.errors import ClusterError
from wazuhcluster.revocation import revocationProblems
from wazuhcluster.tls import certificateNames, loadNodeIdentity

_FIX = "re-run 'wazuh-cluster init' for this node with the cluster's --ca"


def _load(sslDir, name, loader, what):
    """
    Load C{sslDir/name} with C{loader}.

    @return: C{(value, problem)}, one of them L{None}.
    """
    path = sslDir.child(name)
    try:
        data = path.getContent()
    except FileNotFoundError:
        return None, f"{name} is missing"
    except OSError as e:
        return None, f"{name} cannot be read ({e.strerror})"
    try:
        return loader(data), None
    except (ValueError, TypeError) as e:
        reason = str(e).split("\n")[0] or type(e).__name__
        return None, f"{name} is not {what} ({reason})"


def _privateKey(data):
    return serialization.load_pem_private_key(data, password=None)


def _publicBytes(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _sanHosts(cert):
    """
    The DNS names and IP addresses among the certificate's SANs, as text.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def _validity(cert, name, now):
    if now < cert.not_valid_before_utc:
        return [f"{name} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
                "(check this host's clock)"]
    if now > cert.not_valid_after_utc:
        return [f"{name} expired on {cert.not_valid_after_utc:%Y-%m-%d} UTC: {_FIX}"]
    return []


def _names(cert, config):
    """
    The certificate must name the node, and a master's the host workers
    dial.
    """
    if config is None:
        return []
    problems = []
    names = certificateNames(cert)
    if config.node_name not in names:
        problems.append(
            f"node.pem names {', '.join(sorted(names)) or 'nothing'}, not this node "
            f"'{config.node_name}' (the master would refuse its hello): {_FIX}")
    if config.node_type == "master" and not set(config.nodes) & _sanHosts(cert):
        # A master candidate's own address is the entry of <nodes> its
        # certificate names (masters in standby list them all).
        problems.append(
            f"node.pem does not name the master host {config.masterHost} that workers "
            "dial (they would refuse the connection): re-run 'wazuh-cluster init' for "
            f"this node with --master-host {config.masterHost}")
    return problems


#: What each role's certificate must be usable for.
_ROLE_USAGES = {
    "master": ((ExtendedKeyUsageOID.SERVER_AUTH, "TLS servers"),
               (ExtendedKeyUsageOID.CLIENT_AUTH, "TLS clients")),
    "worker": ((ExtendedKeyUsageOID.CLIENT_AUTH, "TLS clients"),),
}


def _usages(cert):
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def _role(cert, config):
    """
    The certificate must carry the role of the node's type, and the key
    usages of that role.
    """
    if config is None or config.node_type not in _ROLE_USAGES:
        return []
    nodeType = config.node_type
    role = certificateRole(cert)
    if role is None:
        return [f"node.pem carries no cluster role (it was issued before roles were "
                f"checked, and peers refuse it): {_FIX}"]
    if role != nodeType:
        return [f"node.pem is a {role}'s certificate but this node is a {nodeType} "
                f"(peers would refuse it): {_FIX}"]
    usages = _usages(cert)
    if usages is None:
        return []
    return [f"node.pem is not for {what} (its extended key usage), as a {nodeType}'s "
            f"certificate must be: {_FIX}"
            for usage, what in _ROLE_USAGES[nodeType] if usage not in usages]


def tlsProblems(sslDir, config=None, now=None, crl=None):
    """
    What is wrong with the TLS identity in C{sslDir}, one line each,
    prefixed with C{Cannot load TLS certificates from DIR:}, and with the
    revocation list C{crl} (it does not verify against the CA, or it
    revokes this node's certificate).

    @param config: the node's L{ClusterConfig}, to check the names its
        certificate must carry; L{None} skips those checks. A disabled
        cluster is not checked.
    @param now: the time to check validity against (an aware
        L{datetime.datetime}; now by default).
    @param crl: the node's C{etc/cluster.crl} (L{FilePath}), or L{None}
        not to check it.
    @rtype: L{list} of L{str}
    """
    if config is not None and config.disabled:
        return []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    prefix = f"Cannot load TLS certificates from {sslDir.path}: "
    ca, caProblem = _load(sslDir, "ca.pem", x509.load_pem_x509_certificate,
                          "a PEM certificate")
    cert, certProblem = _load(sslDir, "node.pem", x509.load_pem_x509_certificate,
                              "a PEM certificate")
    key, keyProblem = _load(sslDir, "node.key", _privateKey,
                            "an unencrypted PEM private key")
    problems = [p for p in (caProblem, certProblem, keyProblem) if p]
    if key is not None and cert is not None and \
            _publicBytes(key.public_key()) != _publicBytes(cert.public_key()):
        problems.append("node.key does not match node.pem (they come from different "
                        f"inits): {_FIX}")
    if ca is not None and cert is not None:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            problems.append(f"node.pem is not signed by ca.pem (another cluster CA): {_FIX}")
    if ca is not None:
        problems += _validity(ca, "ca.pem", now)
    if cert is not None:
        problems += _validity(cert, "node.pem", now)
        problems += _names(cert, config)
        problems += _role(cert, config)
    if not problems:
        try:
            loadNodeIdentity(sslDir)
        except ClusterError as e:
            return [str(e.message)]
    revoked = []
    if crl is not None and ca is not None:
        revoked = revocationProblems(crl, ca, cert)
    return [prefix + problem for problem in problems] + revoked
