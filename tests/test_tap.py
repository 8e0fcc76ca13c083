# -*- test-case-name: tests.test_tap -*-
"""
Tests for the twistd plugins' options and service trees.
"""

import io
import os
import re
import shutil
import signal
import sys
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_endtoend import TWISTD, environment, freePort
from wazuhcluster.errors import StartupError
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.master.refusals import RefusalLog
from wazuhcluster.master.server import ConnectionLimiter, MasterService
from wazuhcluster.nodeinit import initNode
from wazuhcluster.tap import Options, makeNodeService
from wazuhcluster.worker.client import WorkerService


class OptionsTests(SynchronousTestCase):
    """
    L{Options}.
    """

    def test_homeRequired(self):
        """
        C{--home} is required.
        """
        self.assertRaises(UsageError, Options().parseOptions, [])

    def test_debug(self):
        """
        C{-d} turns debug on.
        """
        options = Options()
        options.parseOptions(["--home", "/x", "-d"])
        self.assertEqual((options["home"], options["debug"]), ("/x", True))


class MakeServiceTests(SynchronousTestCase):
    """
    L{makeNodeService} builds a node or refuses with one clear line.
    """

    def setUp(self):
        # A short base: UNIX socket paths are limited to 107 bytes.
        self.base = FilePath(tempfile.mkdtemp(prefix="wzt-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        self.ca = self.base.child("ca").path
        port = freePort()
        self.master = initNode(self.base.child("m").path, "master", "master", self.ca,
                               port=port, bindAddr="127.0.0.1")
        self.worker = initNode(self.base.child("w").path, "worker", "worker1", self.ca,
                               masterHost="127.0.0.1", port=port)

    def make(self, home, kind):
        options = Options()
        options.parseOptions(["--home", home.root.path])
        err = io.StringIO()
        return err, lambda: makeNodeService(options, kind, reactor=None, stderr=err)

    def test_masterTree(self):
        """
        A master home gives a tree with the cluster log and a MasterService
        with its listener and control socket.
        """
        err, make = self.make(self.master, "master")
        root = make()
        names = [type(s).__name__ for s in root]
        self.assertIn("ClusterLogService", names)
        node = [s for s in root if isinstance(s, MasterService)][0]
        self.assertIsNotNone(node.listener)

    def test_jsonLog(self):
        """
        With C{<logging><log_format>plain,json</log_format></logging>} in
        ossec.conf, the node also writes C{logs/cluster.json}; without it,
        only cluster.log.
        """
        err, make = self.make(self.worker, "worker")
        [plain] = [s for s in make() if type(s).__name__ == "ClusterLogService"]
        self.assertIsNone(plain.jsonPath)
        conf = self.worker.ossecConf
        conf.setContent(conf.getContent() + b"<ossec_config><logging><log_format>"
                        b"plain,json</log_format></logging></ossec_config>\n")
        err, make = self.make(self.worker, "worker")
        [service] = [s for s in make() if type(s).__name__ == "ClusterLogService"]
        self.assertEqual(service.jsonPath, self.worker.logs.child("cluster.json"))
        self.assertEqual(service.nodeName, "worker1")

    def test_workerTree(self):
        """
        A worker home gives a WorkerService.
        """
        err, make = self.make(self.worker, "worker")
        self.assertTrue(any(isinstance(s, WorkerService) for s in make()))

    def test_otherKindRefused(self):
        """
        Running a worker home as a master (and the reverse) exits with
        status 1 and one line naming the right plugin, also in cluster.log.
        """
        err, make = self.make(self.worker, "master")
        error = self.assertRaises(StartupError, make)
        self.assertEqual(error.code, 1)
        lines = err.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("start it with 'twistd wazuh-worker'", lines[0])
        self.assertIn("start it with 'twistd wazuh-worker'",
                      self.worker.clusterLog.getContent().decode())

    def test_badConfigurationRefused(self):
        """
        A configuration error stops the start with the original's text.
        """
        text = self.master.ossecConf.getContent()
        text = re.sub(rb"<port>\d+</port>", b"<port>80</port>", text)
        self.master.ossecConf.setContent(text)
        err, make = self.make(self.master, "master")
        self.assertRaises(StartupError, make)
        self.assertIn("Error 3004 - Error in cluster configuration: Port must be higher than "
                      "1024 and lower than 65535.", err.getvalue())

    def test_missingHome(self):
        """
        A home that does not exist is one clear line.
        """
        options = Options()
        options.parseOptions(["--home", self.base.child("nope").path])
        err = io.StringIO()
        self.assertRaises(StartupError, makeNodeService, options, "master", None, err)
        self.assertIn("does not exist", err.getvalue())

    def test_portInUse(self):
        """
        A master whose port is taken is refused before it starts (and before
        twistd daemonises), with one line.
        """
        import socket

        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        self.master = initNode(self.master.root.path, "master", "master", self.ca,
                               port=port, bindAddr="127.0.0.1")
        err, make = self.make(self.master, "master")
        self.assertRaises(StartupError, make)
        self.assertIn(f"Cannot listen on 127.0.0.1:{port}: Address already in use.",
                      err.getvalue())

    def test_controlSocketAnswers(self):
        """
        A second daemon on the same home is refused: its control socket
        already answers.
        """
        import socket

        path = self.worker.controlSocket
        path.parent().makedirs(ignoreExistingDirectory=True)
        server = socket.socket(socket.AF_UNIX)
        server.bind(path.path)
        server.listen(1)
        self.addCleanup(server.close)
        err, make = self.make(self.worker, "worker")
        self.assertRaises(StartupError, make)
        self.assertIn("Another cluster daemon is already running on this home", err.getvalue())

    def test_missingCertificates(self):
        """
        Missing TLS files are one clear line.
        """
        self.master.nodeKey.remove()
        err, make = self.make(self.master, "master")
        self.assertRaises(StartupError, make)
        self.assertIn("Cannot load TLS certificates", err.getvalue())


class ConnectionLimiterTests(SynchronousTestCase):
    """
    At most C{max_connections_per_address} connections per source address.
    """

    def test_limitPerAddress(self):
        """
        The eleventh simultaneous connection from one address is refused and
        logged; other addresses are unaffected; a closed connection frees
        its slot.
        """
        events = []
        clock = Clock()
        limiter = ConnectionLimiter(Factory.forProtocol(Protocol), 10, RefusalLog(
            ClusterLogger("Master", observer=events.append), clock))
        limiter.doStart()
        first = IPv4Address("TCP", "10.0.0.5", 1)
        protocols = [limiter.buildProtocol(first) for _ in range(10)]
        self.assertNotIn(None, protocols)
        for protocol in protocols:
            protocol.makeConnection(StringTransport())
        self.assertIsNone(limiter.buildProtocol(first))
        self.assertIn("Too many connections from 10.0.0.5 (11), rejecting",
                      events[-1]["log_format"].format(**events[-1]))
        # Refusals of one address are logged once a minute at most.
        self.assertIsNone(limiter.buildProtocol(first))
        self.assertEqual(len(events), 1)
        clock.advance(61)
        self.assertIsNone(limiter.buildProtocol(first))
        self.assertEqual(len(events), 2)
        self.assertIn("1 more refused", events[-1]["log_format"].format(**events[-1]))
        self.assertIsNotNone(limiter.buildProtocol(IPv4Address("TCP", "10.0.0.6", 1)))
        protocols[0].connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(limiter.buildProtocol(first))


class TacFileTests(SynchronousTestCase):
    """
    The C{.tac} files build the same nodes as the plugins.
    """

    def test_masterAndWorkerTac(self):
        """
        C{tapfiles/master.tac} and C{worker.tac} load into an application
        holding the node named by C{WAZUH_HOME}.
        """
        from twisted.application.service import IServiceCollection, loadApplication

        base = FilePath(tempfile.mkdtemp(prefix="wzt-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, base.path, True)
        port = freePort()
        ca = base.child("ca").path
        homes = {
            "master": initNode(base.child("m").path, "master", "master", ca, port=port,
                               bindAddr="127.0.0.1"),
            "worker": initNode(base.child("w").path, "worker", "worker1", ca,
                               masterHost="127.0.0.1", port=port),
        }
        tapfiles = FilePath(__file__).parent().sibling("tapfiles")
        for kind, nodeClass in (("master", MasterService), ("worker", WorkerService)):
            self.patch(os, "environ", dict(os.environ, WAZUH_HOME=homes[kind].root.path))
            application = loadApplication(tapfiles.child(f"{kind}.tac").path, "python")
            roots = list(IServiceCollection(application))
            self.assertTrue(any(isinstance(s, nodeClass) for s in roots[0]))

    def test_missingHome(self):
        """
        Without a home in the environment the .tac refuses with one line.
        """
        from wazuhcluster.tap import applicationFor

        err = io.StringIO()
        self.assertRaises(StartupError, applicationFor, "master", environ={}, stderr=err)
        self.assertIn("--home is required", err.getvalue())


class TwistdDefaultsTests(SynchronousTestCase):
    """
    The plugins' defaults for twistd's own options, parsed by twistd's
    L{ServerOptions} as C{twistd} does.
    """

    def setUp(self):
        base = FilePath(self.mktemp())
        self.home = initNode(base.child("m"), "master", "master", base.child("ca"))

    def parse(self, *argv):
        from twisted.scripts._twistd_unix import ServerOptions

        config = ServerOptions()
        config.parseOptions(list(argv))
        return config

    def test_pidfileAndLogfile(self):
        """
        Without C{--pidfile}/C{--logfile}, a daemon keeps its pidfile in
        C{H/var/run/wazuh-clusterd.pid} and twistd's log in
        C{H/logs/twistd.log}.
        """
        config = self.parse("wazuh-master", "--home", self.home.root.path)
        self.assertEqual(config["pidfile"],
                         self.home.root.descendant(["var", "run", "wazuh-clusterd.pid"]).path)
        self.assertEqual(config["logfile"], self.home.logs.child("twistd.log").path)

    def test_foregroundLogsToStdout(self):
        """
        With C{-n}, twistd logs to stdout (no default log file); the pidfile
        default stays, so two foreground nodes can share a directory.
        """
        config = self.parse("-n", "wazuh-worker", "--home", self.home.root.path)
        self.assertIsNone(config["logfile"])
        self.assertTrue(config["pidfile"].startswith(self.home.root.path))

    def test_userChoicesKept(self):
        """
        C{--pidfile}, C{--pidfile=} (none) and C{--logfile} given by the user
        win.
        """
        config = self.parse("--pidfile=my.pid", "--logfile=my.log", "wazuh-master",
                            "--home", self.home.root.path)
        self.assertEqual((config["pidfile"], config["logfile"]),
                         (os.path.abspath("my.pid"), "my.log"))
        self.assertEqual(self.parse("--pidfile=", "-n", "wazuh-master", "--home",
                                    self.home.root.path)["pidfile"], "")

    def test_runAsHomeOwner(self):
        """
        Started as root on a home owned by another user, the node runs as
        that user (twistd's uid/gid) unless C{--uid}/C{--gid} say otherwise;
        on a root-owned home nothing changes.
        """
        from twisted.scripts._twistd_unix import ServerOptions

        from wazuhcluster.tap import applyTwistdDefaults

        def defaults(getuid, **server):
            config = ServerOptions()
            config.update(server)
            options = Options()
            options["home"] = self.home.root.path
            applyTwistdDefaults(options, config, getuid=getuid)
            return config["uid"], config["gid"]

        owner = os.stat(self.home.root.path)
        self.assertEqual(defaults(lambda: 0), (None, None) if owner.st_uid == 0
                         else (owner.st_uid, owner.st_gid))
        if os.getuid() != 0:
            return
        os.chown(self.home.root.path, 65534, 65534)
        self.assertEqual(defaults(lambda: 0), (65534, 65534))
        self.assertEqual(defaults(lambda: 0, uid=1000), (1000, None))
        self.assertEqual(defaults(lambda: 1000), (None, None))
        config = self.parse("wazuh-master", "--home", self.home.root.path)
        self.assertEqual((config["uid"], config["gid"]), (65534, 65534))

    def test_version(self):
        """
        C{twistd wazuh-master --version} prints wazuhcluster's version and
        the Wazuh version it follows.
        """
        from wazuhcluster import WAZUH_COMPATIBLE_VERSION, __version__

        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, Options().parseOptions, ["--version"])
        self.assertEqual(error.code, 0)
        self.assertIn(__version__, out.getvalue())
        self.assertIn(WAZUH_COMPATIBLE_VERSION, out.getvalue())

    def test_defaultHome(self):
        """
        Without C{--home}, C{$WAZUH_HOME} is the home.
        """
        self.patch(os, "environ", dict(os.environ, WAZUH_HOME=self.home.root.path))
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["home"], self.home.root.path)


class DaemonProcessTests(TestCase):
    """
    Real C{twistd} daemons: two nodes started from one directory.
    """

    timeout = 90

    def setUp(self):
        self.base = FilePath(tempfile.mkdtemp(prefix="wzp-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        port = freePort()
        ca = self.base.child("ca").path
        self.homes = [
            initNode(self.base.child("m").path, "master", "master", ca, port=port,
                     bindAddr="127.0.0.1"),
            initNode(self.base.child("w").path, "worker", "worker1", ca,
                     masterHost="127.0.0.1", port=port),
        ]
        self.cwd = self.base.child("cwd")
        self.cwd.makedirs()

    def pid(self, home):
        path = home.root.descendant(["var", "run", "wazuh-clusterd.pid"])
        return int(path.getContent()) if path.exists() else None

    def stop(self, home):
        pid = self.pid(home)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    @inlineCallbacks
    def test_twoDaemonsInOneDirectory(self):
        """
        C{twistd wazuh-master} and C{twistd wazuh-worker} daemonised from the
        same directory both start: each keeps its pidfile in its home's
        C{var/run}, twistd's log in its home's C{logs/}, nothing lands in
        the current directory, and the worker connects.
        """
        for home in self.homes:
            self.addCleanup(self.stop, home)
        for home, kind in zip(self.homes, ("master", "worker")):
            out, err, status = yield getProcessOutputAndValue(
                sys.executable, ["-c", TWISTD, f"wazuh-{kind}", "--home", home.root.path],
                env=environment(), path=self.cwd.path)
            self.assertEqual(status, 0, (out, err))
        for home in self.homes:
            self.assertIsNotNone(self.pid(home))
            self.assertTrue(home.logs.child("twistd.log").exists())
        self.assertEqual(self.cwd.listdir(), [])
        worker = self.homes[1]
        for _ in range(300):
            if worker.clusterLog.exists() and b"Successfully connected to master." in \
                    worker.clusterLog.getContent():
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertIn(b"Successfully connected to master.", worker.clusterLog.getContent())
        for home in self.homes:
            self.stop(home)
            self.assertFalse(home.root.descendant(["var", "run",
                                                   "wazuh-clusterd.pid"]).exists())
