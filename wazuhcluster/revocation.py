# -*- test-case-name: tests.test_revocation -*-
"""
Certificate revocation: the cluster CA's certificate revocation list (CRL),
C{etc/cluster.crl} in every node home.

  - C{wazuh-cluster revoke --home MASTER --ca CADIR --name NODE}
    (L{revokeCertificates}) adds every certificate the CA issued to NODE
    (recorded in C{CADIR/issued/} by L{wazuhcluster.pki}), or the
    certificate file C{--cert} names, to the CA's list C{CADIR/crl.pem},
    signs it with the CA key (cryptography's
    C{CertificateRevocationListBuilder}) and installs it as the master's
    C{etc/cluster.crl}.
  - C{etc/cluster.crl} is a synced file of the C{etc/} item: the master's
    integrity sync gives it to every worker like any other file.
  - A node keeps the list it loaded (L{Revocations}); the verify callbacks
    of L{wazuhcluster.tls} refuse a revoked peer certificate in the TLS
    handshake.  The master reloads the list when its local integrity sees
    the file change and drops every connected worker whose certificate is
    now revoked; a worker reloads it when a sync placed it, and drops a
    master whose certificate is revoked.
  - A list that does not verify against the cluster CA (another CA's,
    altered, not a CRL) is refused: check-config reports it and the node
    does not start; a running node logs an ERROR and keeps the list it had.
    Its C{nextUpdate} (the CA's expiry) is not enforced: the list is
    replaced when the operator revokes more, not on a schedule.
"""

import datetime

from attrs import frozen
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from twisted.internet.defer import maybeDeferred
from twisted.logger import LogLevel

from wazuhcluster.certroles import PeerCertificateRefused, certificateLabel
from wazuhcluster.errors import ClusterError
from wazuhcluster.fsutil import atomicWrite

#: The revocation list in a node home (synced from the master).
CRL_PATH = "etc/cluster.crl"

#: The CA directory's own copy.
CA_CRL = "crl.pem"

#: The mode of C{etc/cluster.crl} (the mode of the C{etc/} item).
CRL_MODE = 0o640

#: The largest revocation list read.
MAX_CRL_BYTES = 4 * 1024 * 1024


class RevocationError(ClusterError):
    """
    A revocation list cannot be used, or a revocation cannot be made.
    """

    code = 3004


@frozen
class RevocationList:
    """
    The serial numbers a CA revoked.

    @ivar serials: the revoked serial numbers.
    @ivar issuer: the CA's name (L{None} for the empty list).
    @ivar number: the list's CRL number (L{None} when it has none).
    """

    serials: frozenset = frozenset()
    issuer: object = None
    number: object = None

    def isRevoked(self, cert):
        """
        Whether the C{cryptography} certificate C{cert} is on the list.
        """
        return (self.issuer is not None and cert.serial_number in self.serials
                and cert.issuer == self.issuer)

    def __len__(self):
        return len(self.serials)


def _authority(authority):
    """
    The C{cryptography} certificate of C{authority} (a Twisted
    C{Certificate} or already a C{cryptography} one).
    """
    original = getattr(authority, "original", None)
    return authority if original is None else original.to_cryptography()


def _verifiedList(data, ca, where):
    """
    The C{cryptography} CRL in PEM C{data}, verified against C{ca}.

    @raise RevocationError: it is not a PEM CRL, or not the CA's.
    """
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError as e:
        reason = str(e).split("\n")[0] or "unreadable"
        raise RevocationError(f"{where} is not a PEM certificate revocation list ({reason})")
    try:
        valid = crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())
    except (InvalidSignature, TypeError, ValueError):
        valid = False
    if not valid:
        raise RevocationError(
            f"{where} does not verify against the cluster CA (ca.pem): it was not made by "
            "'wazuh-cluster revoke' with this cluster's --ca; replace it with the CA's "
            f"{CA_CRL}, or delete it")
    return crl


def _number(crl):
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def parseRevocationList(data, authority, where=CRL_PATH):
    """
    Parse and verify a PEM revocation list.

    @param authority: the cluster CA certificate.
    @param where: how error texts name the list.
    @rtype: L{RevocationList}
    @raise RevocationError: it is not a PEM CRL, or not the CA's.
    """
    crl = _verifiedList(data, _authority(authority), where)
    return RevocationList(frozenset(r.serial_number for r in crl), crl.issuer, _number(crl))


def readRevocationList(path, authority):
    """
    The revocation list in file C{path} (L{FilePath}), verified against
    C{authority}; the empty list when there is no file.

    @raise RevocationError: it cannot be read, or does not verify.
    """
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CRL_BYTES + 1)
    except FileNotFoundError:
        return RevocationList()
    except OSError as e:
        raise RevocationError(f"{path.path} cannot be read ({e.strerror})")
    if len(data) > MAX_CRL_BYTES:
        raise RevocationError(f"{path.path} is larger than {MAX_CRL_BYTES} bytes")
    return parseRevocationList(data, authority, path.path)


def revocationProblems(path, authority, cert=None):
    """
    What is wrong with the revocation list C{path}, for check-config: it
    does not verify, or it revokes this node's own certificate C{cert}.

    @rtype: L{list} of L{str}
    """
    try:
        revoked = readRevocationList(path, authority)
    except RevocationError as e:
        return [e.message]
    if cert is not None and revoked.isRevoked(cert):
        return [f"node.pem (serial {cert.serial_number:x}) is revoked by {path.path}: issue "
                "this node a new certificate with 'wazuh-cluster init' and the cluster's --ca"]
    return []


class Revocations:
    """
    A node's current revocation list, reloaded when its file changes.

    The first load happens when the node is built (before the reactor
    runs, as the TLS identity is loaded); later loads read the file in a
    thread.

    @ivar current: the L{RevocationList} in force.
    """

    def __init__(self, path, authority, log, runInThread):
        """
        @param path: the node's C{etc/cluster.crl} (L{FilePath}).
        @param authority: the cluster CA certificate.
        @param log: the node's L{wazuhcluster.logs.ClusterLogger}.
        @param runInThread: C{deferToThread}-like.
        """
        self.path = path
        self.authority = _authority(authority)
        self.log = log
        self._runInThread = runInThread
        self._listeners = []
        try:
            self.current = readRevocationList(path, self.authority)
        except RevocationError as e:
            self.log.error("{error}: no certificate is considered revoked until it is fixed.",
                           error=e.message)
            self.current = RevocationList()

    def problem(self, cert):
        """
        Why C{cert} is refused (it is revoked), or L{None}.
        """
        if not self.current.isRevoked(cert):
            return None
        return (f"the certificate of {certificateLabel(cert)} (serial "
                f"{cert.serial_number:x}) is revoked by {CRL_PATH}")

    def check(self, cert):
        """
        Raise L{PeerCertificateRefused} if C{cert} is revoked (a check of
        L{wazuhcluster.tls}).
        """
        problem = self.problem(cert)
        if problem is not None:
            raise PeerCertificateRefused(problem)

    def onChange(self, callback):
        """
        Call C{callback(revocations)} after each reload that changed the list.
        """
        self._listeners.append(callback)

    def reload(self):
        """
        Read the file again (in a thread); adopt it if it verifies, else log
        an ERROR and keep the current list.

        @return: a Deferred firing with whether the list changed (never
            failing).
        """
        d = maybeDeferred(self._runInThread, readRevocationList, self.path, self.authority)
        d.addCallbacks(self._loaded, self._refused)
        return d

    def _loaded(self, revoked):
        if revoked == self.current:
            return False
        self.current = revoked
        self.log.info("Loaded the certificate revocation list {path}: {count} revoked "
                      "certificates.", path=CRL_PATH, count=len(revoked))
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:
                self.log.failure("Error applying the revocation list", level=LogLevel.error)
        return True

    def _refused(self, failure):
        failure.trap(RevocationError)
        self.log.error("{error}: keeping the previous list ({count} revoked certificates).",
                       error=failure.value.message, count=len(self.current))
        return False


def revokedConnections(revocations, connections):
    """
    The connections among C{connections} whose peer certificate
    C{revocations} refuses, with the reason.

    @rtype: L{list} of C{(connection, problem)}
    """
    from wazuhcluster.tls import peerCertificate

    found = []
    for connection in connections:
        cert = peerCertificate(connection.transport)
        if cert is None:
            continue
        problem = revocations.problem(cert)
        if problem is not None:
            found.append((connection, problem))
    return found


# --- revoking ---------------------------------------------------------------------


@frozen
class Revoked:
    """
    What L{revokeCertificates} did.

    @ivar added: C{(name, serial)} of each certificate newly revoked.
    @ivar already: C{(name, serial)} of each one that was revoked already.
    @ivar caList: the CA directory's list, written.
    @ivar installed: the master's C{etc/cluster.crl}, written.
    """

    added: tuple
    already: tuple
    caList: object
    installed: object


def _existingEntries(paths, ca):
    """
    The revoked certificates of every list among C{paths} that exists,
    each verified, by serial (the earliest revocation date kept), and the
    highest CRL number.
    """
    entries, number = {}, 0
    for path in paths:
        try:
            data = path.getContent()
        except FileNotFoundError:
            continue
        crl = _verifiedList(data, ca, path.path)
        for entry in crl:
            known = entries.get(entry.serial_number)
            date = entry.revocation_date_utc
            if known is None or date < known:
                entries[entry.serial_number] = date
        number = max(number, _number(crl) or 0)
    return entries, number


def _targets(caDir, ca, nodeName, certPath):
    """
    The certificates to revoke: those the CA recorded issuing to
    C{nodeName}, and the one in C{certPath}.
    """
    from wazuhcluster.pki import issuedCertificates

    targets = []
    if nodeName is not None:
        for cert in issuedCertificates(caDir):
            if certificateLabel(cert) == nodeName and cert.issuer == ca.subject:
                targets.append(cert)
        if not targets and certPath is None:
            raise RevocationError(
                f"No certificate issued to {nodeName} is recorded in "
                f"{caDir.child('issued').path} (certificates issued before revocation "
                "existed are not): revoke its certificate file with --cert (the node's "
                "etc/sslcluster/node.pem)")
    if certPath is not None:
        try:
            cert = x509.load_pem_x509_certificate(certPath.getContent())
            cert.verify_directly_issued_by(ca)
        except OSError as e:
            raise RevocationError(f"{certPath.path} cannot be read ({e.strerror})")
        except (ValueError, TypeError, InvalidSignature):
            raise RevocationError(f"{certPath.path} is not a certificate issued by the "
                                  "cluster CA")
        if nodeName is not None and certificateLabel(cert) != nodeName:
            raise RevocationError(f"{certPath.path} is the certificate of "
                                  f"{certificateLabel(cert)}, not of {nodeName}")
        targets.append(cert)
    return targets


def buildRevocationList(caCert, caKey, entries, number, now):
    """
    A signed PEM revocation list of C{entries} (serial to revocation date).
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(caCert.subject)
        .last_update(now)
        .next_update(max(caCert.not_valid_after_utc, now + datetime.timedelta(days=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial, date in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(date).build())
    crl = builder.sign(caKey, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


def revokeCertificates(caDir, home, nodeName=None, certPath=None, now=None):
    """
    Revoke the certificates of C{nodeName} (or the one in C{certPath}):
    write the CA's list C{caDir/crl.pem} and install it as C{home}'s
    C{etc/cluster.crl}.  The lists already in both places are kept
    (merged), so a revocation is never undone by another.

    @type caDir: L{FilePath}
    @param home: the master's L{wazuhcluster.home.NodeHome}.
    @rtype: L{Revoked}
    @raise RevocationError: nothing to revoke, or a list that does not
        verify.
    @raise ClusterError: the CA cannot be loaded.
    """
    from wazuhcluster.pki import loadAuthority

    caCert, caKey = loadAuthority(caDir)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    caList = caDir.child(CA_CRL)
    installed = home.root.preauthChild(CRL_PATH)
    entries, number = _existingEntries([caList, installed], caCert)
    added, already = [], []
    for cert in _targets(caDir, caCert, nodeName, certPath):
        pair = (certificateLabel(cert), cert.serial_number)
        if cert.serial_number in entries:
            already.append(pair)
        elif pair not in added:
            added.append(pair)
            entries[cert.serial_number] = now
    data = buildRevocationList(caCert, caKey, entries, number + 1, now)
    atomicWrite(caList, data, 0o644)
    atomicWrite(installed, data, CRL_MODE)
    return Revoked(tuple(added), tuple(already), caList, installed)
