# -*- test-case-name: tests.test_revocation -*-
"""
Certificate revocation (issue 10): a revoked worker is refused by the
master and dropped when the list changes, a revoked master is refused by
its workers, check-config reports a list that does not verify, and
C{wazuh-cluster revoke} makes the list.

The attack tests write their lists with cryptography directly, so that
they do not depend on the code they test.
"""

import datetime
import io
import shutil
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.certs import makeAuthority
from tests.cluster import InMemoryCluster
from tests.test_hello import LogCapture
from wazuhcluster import cli
from wazuhcluster.logs import ClusterLogger


def _load(path):
    return x509.load_pem_x509_certificate(path.getContent())


def writeList(caDir, target, *certs):
    """
    Write into C{target} a revocation list of the CA in C{caDir} revoking
    C{certs} (each a C{cryptography} certificate or a C{node.pem} path).
    """
    ca = _load(caDir.child("ca.pem"))
    key = serialization.load_pem_private_key(caDir.child("ca.key").getContent(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now).next_update(now + datetime.timedelta(days=30)))
    for cert in certs:
        if isinstance(cert, FilePath):
            cert = _load(cert)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(now).build())
    data = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    if not target.parent().isdir():
        target.parent().makedirs()
    target.setContent(data)
    return data


def crlOf(home):
    return home.root.child("etc").child("cluster.crl")


class RevokedWorkerTests(SynchronousTestCase):
    """
    The master refuses a revoked worker, and drops a connected one when
    its list changes.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self)

    def revoke(self, *homes):
        writeList(self.cluster.caDir, crlOf(self.cluster.masterHome),
                  *[home.nodeCert for home in homes])
        # The master's local integrity notices the new file at its next scan.
        self.cluster.network.advance(9)

    def test_revokedWorkerRefused(self):
        """
        The attack: worker1's certificate was revoked, yet worker1
        connects.  The master refuses it in the handshake with a line
        naming the node and "revoked", and registers only the others.
        """
        worker = self.cluster.addWorker("worker1", start=False)
        other = self.cluster.addWorker("worker2")
        self.revoke(worker.home)
        worker.startService()
        self.cluster.network.flush()
        self.assertIs(worker.connection, None)
        self.assertEqual(list(self.cluster.master.workers), ["worker2"])
        self.assertIsNot(other.connection, None)
        serial = f"{_load(worker.home.nodeCert).serial_number:x}"
        self.assertTrue(self.logs.contains(
            "WARNING: [Worker] [Main] Refused a connection from 10.0.0.2: the certificate "
            f"of worker1 (serial {serial}) is revoked by etc/cluster.crl."), self.logs.lines())

    def test_connectedWorkerDropped(self):
        """
        The attack: worker1 stays connected after its certificate was
        revoked.  When the master's list changes, it disconnects worker1
        (one ERROR naming it) and refuses it from then on; worker2 stays.
        """
        worker = self.cluster.addWorker("worker1")
        other = self.cluster.addWorker("worker2")
        self.assertEqual(sorted(self.cluster.master.workers), ["worker1", "worker2"])
        self.revoke(worker.home)
        self.assertEqual(list(self.cluster.master.workers), ["worker2"])
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Main] Disconnecting worker1: the certificate of "
            "worker1"), self.logs.lines())
        self.cluster.network.advance(30)
        self.assertIs(worker.connection, None)
        self.assertEqual(list(self.cluster.master.workers), ["worker2"])
        self.assertIsNot(other.connection, None)

    def test_listSyncedToWorkers(self):
        """
        The list is a synced file: a worker receives it and loads it.
        """
        worker = self.cluster.addWorker("worker2")
        victim = self.cluster.addWorker("worker1", start=False)
        self.revoke(victim.home)
        self.cluster.network.advance(10)
        self.assertEqual(crlOf(worker.home).getContent(),
                         crlOf(self.cluster.masterHome).getContent())
        self.assertTrue(worker.revocations.current.isRevoked(_load(victim.home.nodeCert)))

    def test_unverifiedListKept(self):
        """
        A list the CA did not sign does not replace the one in force: one
        ERROR, and the revoked worker stays refused.
        """
        worker = self.cluster.addWorker("worker1", start=False)
        self.revoke(worker.home)
        rogue = makeAuthority(self.cluster.tmp.child("rogue"))
        writeList(rogue, crlOf(self.cluster.masterHome))
        self.cluster.network.advance(9)
        self.assertTrue(self.logs.contains("does not verify against the cluster CA"),
                        self.logs.lines())
        worker.startService()
        self.cluster.network.flush()
        self.assertIs(worker.connection, None)


class RevokedMasterTests(SynchronousTestCase):
    """
    Workers refuse a revoked master certificate.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self)

    def test_revokedMasterRefused(self):
        """
        The attack: the master's certificate is revoked in the worker's
        list, yet the worker talks to it.  The worker refuses it in the
        handshake and says why.
        """
        worker = self.cluster.addWorker("worker1", start=False)
        writeList(self.cluster.caDir, crlOf(worker.home), self.cluster.masterHome.nodeCert)
        self.successResultOf(worker.revocations.reload())
        worker.startService()
        self.cluster.network.flush()
        self.assertIs(worker.connection, None)
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Main] Could not connect to master: the certificate of "
            "master (serial"), self.logs.lines())
        self.assertTrue(self.logs.contains("is revoked by etc/cluster.crl"), self.logs.lines())

    def test_syncedListDropsMaster(self):
        """
        A list received from the master that revokes the master's own
        certificate makes the worker drop the connection and refuse it.
        """
        worker = self.cluster.addWorker("worker1")
        self.assertIsNot(worker.connection, None)
        writeList(self.cluster.caDir, crlOf(self.cluster.masterHome),
                  self.cluster.masterHome.nodeCert)
        self.cluster.network.advance(12)
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Main] Disconnecting from the master: the certificate "
            "of master"), self.logs.lines())
        self.cluster.network.advance(30)
        self.assertIs(worker.connection, None)


class CheckConfigTests(SynchronousTestCase):
    """
    check-config reports a revocation list that does not verify against
    the CA, or that revokes the node itself; the node does not start.
    """

    def setUp(self):
        from wazuhcluster.nodeinit import initNode

        self.base = FilePath(tempfile.mkdtemp(prefix="wzv-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        self.ca = self.base.child("ca")
        self.worker = initNode(self.base.child("w"), "worker", "worker1", self.ca,
                               masterHost="127.0.0.1")
        self.other = initNode(self.base.child("x"), "worker", "worker2", self.ca,
                              masterHost="127.0.0.1")

    def check(self):
        from wazuhcluster.checkconfig import runCheckConfig

        out, err = io.StringIO(), io.StringIO()
        return runCheckConfig(self.worker.root.path, out, err), err.getvalue()

    def test_valid(self):
        """
        A list of the cluster CA revoking another node is fine.
        """
        writeList(self.ca, crlOf(self.worker), self.other.nodeCert)
        self.assertEqual(self.check(), (0, ""))

    def test_otherAuthority(self):
        """
        A list signed by another CA is reported.
        """
        writeList(makeAuthority(self.base.child("rogue")), crlOf(self.worker))
        status, err = self.check()
        self.assertEqual(status, 1)
        self.assertIn("cluster.crl does not verify against the cluster CA", err)

    def test_garbage(self):
        """
        A file that is not a revocation list is reported.
        """
        crlOf(self.worker).setContent(b"garbage")
        status, err = self.check()
        self.assertEqual(status, 1)
        self.assertIn("cluster.crl is not a PEM certificate revocation list", err)

    def test_ownCertificateRevoked(self):
        """
        A list revoking this node's own certificate is reported.
        """
        writeList(self.ca, crlOf(self.worker), self.worker.nodeCert)
        status, err = self.check()
        self.assertEqual(status, 1)
        self.assertIn("node.pem (serial", err)
        self.assertIn("is revoked by", err)


class RevokeCommandTests(SynchronousTestCase):
    """
    C{wazuh-cluster revoke}.
    """

    def setUp(self):
        from wazuhcluster.nodeinit import initNode

        self.base = FilePath(tempfile.mkdtemp(prefix="wzc-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        self.ca = self.base.child("ca")
        self.master = initNode(self.base.child("m"), "master", "master", self.ca,
                               masterHost="127.0.0.1")
        self.worker = initNode(self.base.child("w"), "worker", "worker1", self.ca,
                               masterHost="127.0.0.1")

    def revoke(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = cli.run(["revoke", "--home", self.master.root.path, "--ca", self.ca.path,
                          *argv], out, err)
        return status, out.getvalue(), err.getvalue()

    def revokedSerials(self, path):
        crl = x509.load_pem_x509_crl(path.getContent())
        self.assertTrue(crl.is_signature_valid(_load(self.ca.child("ca.pem")).public_key()))
        return {entry.serial_number for entry in crl}

    def test_revokeByName(self):
        """
        Revoking a node by name lists its certificate in the CA's list and
        in the master's etc/cluster.crl, both signed by the CA; the master
        and the other nodes are not revoked.
        """
        status, out, err = self.revoke("--name", "worker1")
        self.assertEqual((status, err), (0, ""))
        serial = _load(self.worker.nodeCert).serial_number
        self.assertIn(f"Revoked the certificate of worker1 (serial {serial:x}).", out)
        self.assertEqual(self.revokedSerials(self.ca.child("crl.pem")), {serial})
        self.assertEqual(self.revokedSerials(crlOf(self.master)), {serial})
        self.assertEqual(self.check(self.master), 0)

    def check(self, home):
        from wazuhcluster.checkconfig import runCheckConfig

        return runCheckConfig(home.root.path, io.StringIO(), io.StringIO())

    def test_revokeKeepsEarlierRevocations(self):
        """
        A second revocation keeps the first; revoking again says so.
        """
        from wazuhcluster.nodeinit import initNode

        other = initNode(self.base.child("w2"), "worker", "worker2", self.ca,
                         masterHost="127.0.0.1")
        self.revoke("--name", "worker1")
        status, out, err = self.revoke("--name", "worker2")
        self.assertEqual(status, 0, err)
        self.assertEqual(self.revokedSerials(crlOf(self.master)),
                         {_load(self.worker.nodeCert).serial_number,
                          _load(other.nodeCert).serial_number})
        status, out, err = self.revoke("--name", "worker2")
        self.assertEqual(status, 0, err)
        self.assertIn("was already revoked", out)

    def test_reissuedCertificateNotRevoked(self):
        """
        A node re-initialised after its revocation (a new key) is not
        revoked: only the certificates issued so far are.
        """
        from wazuhcluster.nodeinit import initNode

        self.revoke("--name", "worker1")
        self.worker.nodeCert.remove()
        initNode(self.worker.root, "worker", "worker1", self.ca)
        self.assertNotIn(_load(self.worker.nodeCert).serial_number,
                         self.revokedSerials(crlOf(self.master)))

    def test_revokeCertificateFile(self):
        """
        --cert revokes the certificate in a file (one issued before the CA
        recorded its certificates).
        """
        status, out, err = self.revoke("--cert", self.worker.nodeCert.path)
        self.assertEqual(status, 0, err)
        self.assertEqual(self.revokedSerials(crlOf(self.master)),
                         {_load(self.worker.nodeCert).serial_number})

    def test_unknownName(self):
        """
        A name the CA never issued a certificate to is one clear line and
        exit status 1.
        """
        status, out, err = self.revoke("--name", "nobody")
        self.assertEqual(status, 1)
        self.assertIn("No certificate issued to nobody is recorded", err)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertFalse(crlOf(self.master).exists())

    def test_workerHomeRefused(self):
        """
        revoke runs on the master's home.
        """
        out, err = io.StringIO(), io.StringIO()
        status = cli.run(["revoke", "--home", self.worker.root.path, "--ca", self.ca.path,
                          "--name", "worker1"], out, err)
        self.assertEqual(status, 1)
        self.assertIn("run revoke on the master's home", err.getvalue())

    def test_otherCaRefused(self):
        """
        The CA must be the one the master was initialised with.
        """
        other = makeAuthority(self.base.child("other"))
        out, err = io.StringIO(), io.StringIO()
        status = cli.run(["revoke", "--home", self.master.root.path, "--ca", other.path,
                          "--name", "worker1"], out, err)
        self.assertEqual(status, 1)
        self.assertIn("is not the CA of the master", err.getvalue())

    def test_nothingToRevoke(self):
        """
        Neither --name nor --cert: one line, exit status 1.
        """
        status, out, err = self.revoke()
        self.assertEqual(status, 1)
        self.assertIn("--name NODE or --cert PATH", err)


class ReloadThreadTests(TestCase):
    """
    L{Revocations.reload} reads the list in a real thread.
    """

    @inlineCallbacks
    def test_reloadInThread(self):
        """
        A list written after the node loaded its own is read in a thread
        and adopted, and the listeners hear of it once.
        """
        from wazuhcluster.revocation import Revocations

        tmp = FilePath(self.mktemp())
        caDir = makeAuthority(tmp)
        path = tmp.child("etc").child("cluster.crl")
        revocations = Revocations(path, _load(caDir.child("ca.pem")),
                                  ClusterLogger("Master", "Main"), deferToThread)
        heard = []
        revocations.onChange(heard.append)
        from tests.certs import makeNodeSsl

        sslDir = makeNodeSsl(caDir, tmp.child("w"), "worker1", ())
        writeList(caDir, path, sslDir.child("node.pem"))
        changed = yield revocations.reload()
        self.assertTrue(changed)
        self.assertEqual(heard, [revocations])
        self.assertTrue(revocations.current.isRevoked(_load(sslDir.child("node.pem"))))
        changed = yield revocations.reload()
        self.assertFalse(changed)
        self.assertEqual(len(heard), 1)
