# -*- test-case-name: tests.test_cert_roles -*-
"""
Roles in certificates (issue 10): a node certificate says whether it is a
master's or a worker's, and each side checks it.  Before roles, every node
certificate carried serverAuth and clientAuth, so any node's certificate
could act as the master toward a worker that dials a host it names.
"""

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.certs import makeAuthority, makeNodeSsl
from tests.cluster import MASTER_HOST, InMemoryCluster
from tests.test_hello import LogCapture
from wazuhcluster.tls import loadNodeIdentity, masterContextFactory


def _cert(sslDir):
    return x509.load_pem_x509_certificate(sslDir.child("node.pem").getContent())


class ImpostorMasterTests(SynchronousTestCase):
    """
    A worker's certificate cannot act as the master toward a worker, even
    when it names the host the worker dials.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self)

    def impostor(self, name, **options):
        """
        Make the in-memory master answer with the certificate of node
        C{name} (naming the master host), as a node holding that
        certificate and the cluster key would.
        """
        sslDir = makeNodeSsl(self.cluster.caDir, self.cluster.tmp.child("impostor-" + name),
                             name, hosts=(MASTER_HOST,), **options)
        self.cluster.network.masterContext = masterContextFactory(loadNodeIdentity(sslDir))
        return sslDir

    def test_workerCertificateRefusedAsMaster(self):
        """
        The attack: node03's certificate naming the master host serves the
        worker's connection.  The worker refuses it in the handshake, says
        why in words, and registers nowhere.
        """
        self.impostor("node03")
        worker = self.cluster.addWorker("worker1")
        self.assertIs(worker.connection, None)
        self.assertEqual(self.cluster.master.workers, {})
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Main] Could not connect to master: the server at "
            f"{MASTER_HOST!r} presented the certificate of node03, which is a worker's "
            "certificate, not a master's"), self.logs.lines())

    def test_roleLessCertificateRefusedAsMaster(self):
        """
        A certificate issued before roles (serverAuth and clientAuth, no
        role) is refused as a master's, with a line saying to re-issue it.
        """
        self.impostor("master", role=None)
        worker = self.cluster.addWorker("worker1")
        self.assertIs(worker.connection, None)
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Main] Could not connect to master: the certificate of "
            "master carries no cluster role"), self.logs.lines())

    def test_masterCertificateAccepted(self):
        """
        The real master's certificate (master role) is accepted.
        """
        worker = self.cluster.addWorker("worker1")
        self.assertIsNot(worker.connection, None)


class WorkerRoleTests(SynchronousTestCase):
    """
    The master refuses a client certificate without the worker role.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self)

    def test_masterCertificateAsWorkerRefused(self):
        """
        A node presenting a master's certificate (it names node05) and
        claiming to be worker node05 is refused at the hello with a line
        naming the certificate's role.
        """
        worker = self.cluster.addWorker("node05", certRole="master")
        self.assertIs(worker.connection, None)
        self.assertEqual(self.cluster.master.workers, {})
        text = ("Error 3063 - The certificate of node05 is a master's certificate, "
                "not a worker's")
        self.assertTrue(self.logs.contains(
            f"ERROR: [Worker] [Main] Rejected connection from ('10.0.0.2', 40001) (node "
            f"'node05'): {text}"), self.logs.lines())
        self.assertTrue(self.logs.contains(
            f"ERROR: [Worker node05] [Main] Could not connect to master: {text}"),
            self.logs.lines())

    def test_roleLessClientRefused(self):
        """
        A client certificate without any role (issued before roles) is
        refused in the TLS handshake, with a rate-limited line naming the
        node.
        """
        worker = self.cluster.addWorker("node06", certRole=None)
        self.assertIs(worker.connection, None)
        self.assertEqual(self.cluster.master.workers, {})
        self.assertTrue(self.logs.contains(
            "WARNING: [Worker] [Main] Refused a connection from 10.0.0.2: the certificate "
            "of node06 carries no cluster role"), self.logs.lines())
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker node06] [Main] Could not connect to master: the master closed "
            "the connection before answering the hello (it refused this node's "
            "certificate"), self.logs.lines())


class IssuedRoleTests(SynchronousTestCase):
    """
    What C{wazuh-cluster init} issues: the role in the subject, and the
    key usages of the role.
    """

    def setUp(self):
        self.caDir = makeAuthority(FilePath(self.mktemp()))

    def test_workerCertificate(self):
        """
        A worker's certificate names the worker role and is for TLS clients
        only.
        """
        cert = _cert(makeNodeSsl(self.caDir, FilePath(self.mktemp()), "node02", (),
                                 role="worker"))
        units = [a.value for a in cert.subject.get_attributes_for_oid(
            NameOID.ORGANIZATIONAL_UNIT_NAME)]
        self.assertEqual(units, ["wazuhcluster worker"])
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])

    def test_masterCertificate(self):
        """
        A master's certificate names the master role and serves as TLS
        server and client (a standby master dials the active one).
        """
        cert = _cert(makeNodeSsl(self.caDir, FilePath(self.mktemp()), "master", (),
                                 role="master"))
        units = [a.value for a in cert.subject.get_attributes_for_oid(
            NameOID.ORGANIZATIONAL_UNIT_NAME)]
        self.assertEqual(units, ["wazuhcluster master"])
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(set(eku), {ExtendedKeyUsageOID.SERVER_AUTH,
                                    ExtendedKeyUsageOID.CLIENT_AUTH})


class StartCheckTests(SynchronousTestCase):
    """
    check-config reports a certificate of the wrong role for the node type,
    and the node refuses to start with the same line.
    """

    def setUp(self):
        import shutil
        import tempfile

        from wazuhcluster.nodeinit import initNode

        # A short base: UNIX socket paths are limited to 107 bytes.
        self.base = FilePath(tempfile.mkdtemp(prefix="wzr-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        self.ca = self.base.child("ca")
        self.master = initNode(self.base.child("m"), "master", "master", self.ca,
                               masterHost="127.0.0.1", bindAddr="127.0.0.1")
        self.worker = initNode(self.base.child("w"), "worker", "worker1", self.ca,
                               masterHost="127.0.0.1")

    def assertRefused(self, home, kind, fragment):
        """
        check-config exits 1 with one line holding C{fragment}, and the
        twistd plugin refuses to start with that line.
        """
        import io

        from wazuhcluster.checkconfig import runCheckConfig
        from wazuhcluster.errors import StartupError
        from wazuhcluster.tap import Options, makeNodeService

        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(runCheckConfig(home.root.path, out, err), 1, out.getvalue())
        self.assertEqual(len(err.getvalue().splitlines()), 1, err.getvalue())
        self.assertIn(fragment, err.getvalue())
        options = Options()
        options.parseOptions(["--home", home.root.path])
        refusal = io.StringIO()
        self.assertRaises(StartupError, makeNodeService, options, kind, None, refusal)
        self.assertEqual(refusal.getvalue(), f"wazuh-{kind}: {err.getvalue()}")

    def test_masterCertificateOnWorker(self):
        """
        A worker holding a master's certificate (for its own name) is
        refused.
        """
        makeNodeSsl(self.ca, self.worker, "worker1", (), role="master")
        self.assertRefused(self.worker, "worker",
                           "node.pem is a master's certificate but this node is a worker")

    def test_workerCertificateOnMaster(self):
        """
        A master holding a worker's certificate is refused.
        """
        makeNodeSsl(self.ca, self.master, "master", ("127.0.0.1",), role="worker")
        self.assertRefused(self.master, "master",
                           "node.pem is a worker's certificate but this node is a master")

    def test_rolelessCertificate(self):
        """
        A certificate issued before roles is refused, and re-running init
        re-issues it with the role.
        """
        from wazuhcluster.nodeinit import initNode

        makeNodeSsl(self.ca, self.worker, "worker1", (), role=None)
        self.assertRefused(self.worker, "worker", "node.pem carries no cluster role")
        initNode(self.worker.root, "worker", "worker1", self.ca)
        self.assertEqual(_roleOf(self.worker.sslDir), "worker")


def _roleOf(sslDir):
    from wazuhcluster.certroles import certificateRole

    return certificateRole(_cert(sslDir))
