# -*- test-case-name: tests.test_tls -*-
"""
The cluster's certificate authority and node certificates (DESIGN.md,
"Protocol rules"): what C{wazuh-cluster init}, the demo and the tests use to
make TLS material.  The runtime side (loading it, TLS options, the hello
proof) is L{wazuhcluster.tls}.

Files::

    CADIR/ca.pem  CADIR/ca.key (0600)  CADIR/cluster.key (0600)
    CADIR/issued/<serial>.pem   every certificate issued (what revoke finds)
    CADIR/crl.pem               the revocation list (L{wazuhcluster.revocation})
    etc/sslcluster/ca.pem  node.pem  node.key (0600)

Every node certificate carries its role (L{wazuhcluster.certroles.ROLE_UNITS}), in
two ways checked independently:

  - its subject's organizational unit, C{wazuhcluster master} or
    C{wazuhcluster worker}: the marker both sides read (a standard
    attribute any tool shows, no private OID needed);
  - its extended key usage: a master's certificate is for TLS servers and
    clients (a standby master dials the active one as a worker does), a
    worker's for TLS clients only, so OpenSSL itself refuses a worker's
    certificate presented by a server, before any of our code runs.
"""

import datetime
import ipaddress
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wazuhcluster.fsutil import atomicWrite
from wazuhcluster.certroles import ROLE_UNITS, ROLES, certificateRole
from wazuhcluster.tls import TLSSetupError, loadNodeIdentity

CA_VALIDITY = datetime.timedelta(days=3650)
NODE_VALIDITY = datetime.timedelta(days=3 * 365)


def _ensureDirectory(path, mode=0o700):
    """
    Create directory C{path} with C{mode} if it does not exist.
    """
    if not path.isdir():
        path.makedirs(ignoreExistingDirectory=True)
        path.chmod(mode)


def _keyPEM(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certPEM(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(commonName, role=None):
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, commonName)]
    if role is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                              ROLE_UNITS[role]))
    return x509.Name(attributes)


#: The extended key usages of each role's certificate.
ROLE_USAGES = {
    "master": (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    "worker": (ExtendedKeyUsageOID.CLIENT_AUTH,),
}


def _builder(subject, issuer, publicKey, validity):
    """
    A certificate builder with the common fields: names, key, random serial
    and a validity period starting a little in the past (clock skew).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + validity)
    )


def _subjectAltName(host):
    """
    The SAN entry for C{host}: an C{IPAddress} when it parses as an IP
    address, otherwise a C{DNSName}.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _makeAuthority(clusterName):
    """
    Create a self-signed CA certificate and its key.

    @return: C{(certificate, key)}
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"wazuhcluster CA {clusterName}")
    cert = (
        _builder(subject, subject, key.public_key(), CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _checkRole(role):
    if role not in ROLES:
        raise TLSSetupError(f"Invalid certificate role {role!r}: expected master or worker")


def _makeNodeCertificate(caCert, caKey, nodeName, hosts, role):
    """
    Create a node certificate of C{role} signed by the CA.

    @return: C{(certificate, key)}
    """
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(nodeName)]
    for host in hosts:
        entry = _subjectAltName(host)
        if entry not in sans:
            sans.append(entry)
    cert = (
        _builder(_name(nodeName, role), caCert.subject, key.public_key(), NODE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(list(ROLE_USAGES[role])), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    return cert, key


# --- the certificate authority ----------------------------------------------


def ensureCertificateAuthority(caDir, clusterName):
    """
    Create the cluster CA in C{caDir} unless it exists: C{ca.pem} and
    C{ca.key} (0600), and C{cluster.key} (0600, a random 32-character hex
    cluster key) each only if absent, so every node made from one CA
    directory shares the CA and the key.

    @type caDir: L{FilePath}
    @param clusterName: the cluster name, recorded in the CA's subject.
    """
    _ensureDirectory(caDir)
    caCert, caKey = caDir.child("ca.pem"), caDir.child("ca.key")
    if caCert.exists() != caKey.exists():
        raise TLSSetupError(
            f"Incomplete certificate authority in {caDir.path}: "
            "ca.pem and ca.key must both exist or both be absent"
        )
    if not caCert.exists():
        cert, key = _makeAuthority(clusterName)
        atomicWrite(caKey, _keyPEM(key), 0o600)
        atomicWrite(caCert, _certPEM(cert), 0o644)
    clusterKey = caDir.child("cluster.key")
    if not clusterKey.exists():
        key = secrets.token_hex(16).encode("ascii") + b"\n"
        atomicWrite(clusterKey, key, 0o600)


def readClusterKey(caDir):
    """
    The cluster key stored in C{caDir/cluster.key}.

    @rtype: L{str}
    @raise TLSSetupError: if it cannot be read.
    """
    try:
        return caDir.child("cluster.key").getContent().decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TLSSetupError(f"Cannot read the cluster key in {caDir.path}: {e}")


def loadAuthority(caDir):
    """
    Load the CA certificate and key from C{caDir}.

    @raise TLSSetupError: if they are missing or unreadable.
    """
    try:
        cert = x509.load_pem_x509_certificate(caDir.child("ca.pem").getContent())
        key = serialization.load_pem_private_key(
            caDir.child("ca.key").getContent(), password=None
        )
    except (OSError, ValueError, TypeError) as e:
        raise TLSSetupError(
            f"Cannot load the certificate authority from {caDir.path}: {e}"
        )
    return cert, key


def issueNodeCertificate(caDir, sslDir, nodeName, hosts, role):
    """
    Issue a certificate of C{role} for C{nodeName} signed by the CA in
    C{caDir}, record it in C{caDir/issued/}, and write C{sslDir/ca.pem}
    (the CA certificate only, never its key), C{sslDir/node.pem} and
    C{sslDir/node.key} (0600).

    @type caDir: L{FilePath}
    @type sslDir: L{FilePath}
    @param nodeName: the certificate's common name and first DNS SAN.
    @param hosts: more subject alternative names: IP addresses become
        C{IPAddress} entries, anything else C{DNSName}.
    @type hosts: L{list} of L{str}
    @param role: C{"master"} or C{"worker"}.
    """
    _checkRole(role)
    caCert, caKey = loadAuthority(caDir)
    cert, key = _makeNodeCertificate(caCert, caKey, nodeName, list(hosts), role)
    recordIssued(caDir, cert)
    _ensureDirectory(sslDir)
    atomicWrite(sslDir.child("node.key"), _keyPEM(key), 0o600)
    atomicWrite(sslDir.child("node.pem"), _certPEM(cert), 0o644)
    atomicWrite(sslDir.child("ca.pem"), _certPEM(caCert), 0o644)


#: Where the CA directory keeps a copy of every certificate it issued.
ISSUED_DIRECTORY = "issued"


def recordIssued(caDir, cert):
    """
    Keep a copy of C{cert} in C{caDir/issued/<serial>.pem}, so that
    C{wazuh-cluster revoke --name} can find every certificate issued to a
    node.
    """
    issued = caDir.child(ISSUED_DIRECTORY)
    _ensureDirectory(issued)
    atomicWrite(issued.child(f"{cert.serial_number:x}.pem"), _certPEM(cert), 0o644)


def issuedCertificates(caDir):
    """
    The certificates the CA in C{caDir} recorded issuing (unreadable
    entries skipped).

    @rtype: L{list} of C{cryptography} certificates
    """
    issued = caDir.child(ISSUED_DIRECTORY)
    if not issued.isdir():
        return []
    found = []
    for child in sorted(issued.children(), key=lambda c: c.basename()):
        if not child.basename().endswith(".pem"):
            continue
        try:
            found.append(x509.load_pem_x509_certificate(child.getContent()))
        except (OSError, ValueError):
            continue
    return found


def nodeCertificateMatches(caDir, sslDir, nodeName, hosts, role):
    """
    Whether C{sslDir} already holds a usable certificate of C{role} for
    C{nodeName} issued by the CA in C{caDir}: same CA certificate, node
    certificate signed by it with common name C{nodeName}, the role, every
    name of C{hosts} among its SANs, and the matching key.  Lets C{init} be
    re-run without reissuing certificates (and makes it reissue one made
    before roles).

    @rtype: L{bool}
    """
    try:
        caPem = caDir.child("ca.pem").getContent()
        if sslDir.child("ca.pem").getContent() != caPem:
            return False
        caCert = x509.load_pem_x509_certificate(caPem)
        cert = x509.load_pem_x509_certificate(sslDir.child("node.pem").getContent())
        cert.verify_directly_issued_by(caCert)
        loadNodeIdentity(sslDir)
    except Exception:
        return False
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    wanted = [x509.DNSName(nodeName)] + [_subjectAltName(h) for h in hosts]
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        cn == [nodeName]
        and certificateRole(cert) == role
        and all(w in sans.value for w in wanted)
        and cert.not_valid_after_utc - now > datetime.timedelta(days=30)
    )
