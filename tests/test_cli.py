# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{wazuhcluster.cli}: help, version, the default home, control's
options and exit codes, and user mistakes (one line on stderr, non-zero
exit, never a traceback) for every subcommand.
"""

import argparse

# Imported here, before a test forks a child that drops to an unprivileged
# user: that user cannot read the interpreter's library directory.
import encodings.idna  # noqa: F401
import encodings.utf_8_sig  # noqa: F401
import io
import json
import os
import pwd
import shutil
import tempfile
import traceback

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

import wazuhcluster.agentcli  # noqa: F401
import wazuhcluster.checkconfig  # noqa: F401
import wazuhcluster.control  # noqa: F401
import wazuhcluster.controlclient  # noqa: F401
import wazuhcluster.demo  # noqa: F401
import wazuhcluster.master.server  # noqa: F401
import wazuhcluster.worker.client  # noqa: F401
from tests.cluster import InMemoryCluster
from tests.test_endtoend import ClusterProcesses
from wazuhcluster import WAZUH_COMPATIBLE_VERSION, __version__, cli
from wazuhcluster.cli import defaultHome, run
from wazuhcluster.cliparser import buildParser
from wazuhcluster.control import ControlServer
from wazuhcluster.localserver.master import MasterLocalHandler
from wazuhcluster.localserver.worker import WorkerLocalHandler
from wazuhcluster.controlclient import controlCommand
from wazuhcluster.home import NodeHome
from wazuhcluster.nodeinit import initNode


def runCli(*argv, environ=None):
    """
    Run C{wazuh-cluster ARGV} in this process.

    @return: C{(status, stdout, stderr)}.
    """
    out, err = io.StringIO(), io.StringIO()
    status = run(list(argv), out, err, environ={} if environ is None else environ)
    return status, out.getvalue(), err.getvalue()


def shortBase(testCase, prefix="wzl-"):
    """
    A temporary directory under /tmp (UNIX socket paths are limited to 107
    bytes), readable by every user, removed after the test.
    """
    base = FilePath(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)
    testCase.addCleanup(shutil.rmtree, base.path, True)
    return base


def _allParsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _allParsers(sub)


class HelpTests(SynchronousTestCase):
    """
    C{--help} and C{--version}.
    """

    def test_everyOptionDescribed(self):
        """
        Every option of every subcommand has a help text, C{--home}
        describes the default home, and every help ends with the exit
        status codes.
        """
        for parser in _allParsers(buildParser()):
            for action in parser._actions:
                if action.option_strings:
                    self.assertTrue(action.help, (parser.prog, action.option_strings))
                if "--home" in action.option_strings:
                    self.assertIn("$WAZUH_HOME", action.help)
                    self.assertIn("/var/ossec", action.help)
            text = parser.format_help()
            self.assertIn("exit status:", text, parser.prog)
            self.assertIn("2  wrong usage", text, parser.prog)

    def test_examplesAndDefaults(self):
        """
        The helps show examples and the defaults of options that have one.
        """
        parser = buildParser()
        self.assertIn("examples:", parser.format_help())
        demo = [p for p in _allParsers(parser) if p.prog.endswith(" demo")][0]
        text = demo.format_help()
        self.assertIn("examples:", text)
        self.assertIn("(default: demo)", text)
        self.assertIn("(default: 2)", text)

    def test_version(self):
        """
        C{--version} prints wazuhcluster's version and the Wazuh version it
        follows.
        """
        status, out, err = runCli("--version")
        self.assertEqual((status, err), (0, ""))
        self.assertIn(__version__, out)
        self.assertIn(f"Wazuh {WAZUH_COMPATIBLE_VERSION}", out)

    def test_reportVersionIsNotTheProgramVersion(self):
        """
        C{agent report --version V} is the agent's version, not a request
        for the program's.
        """
        args = buildParser().parse_args(["agent", "report", "--id", "1", "--version", "v4"])
        self.assertEqual((args.version, args.show_version), ("v4", False))

    def test_noCommand(self):
        """
        Without a command the help is printed and the exit status is 2.
        """
        status, out, err = runCli()
        self.assertEqual(status, 2)
        self.assertIn("COMMAND", err)


class DefaultHomeTests(SynchronousTestCase):
    """
    The home used without C{--home}.
    """

    def test_wazuhHome(self):
        """
        C{$WAZUH_HOME} is the default home.
        """
        base = FilePath(self.mktemp())
        home = initNode(base.child("m"), "master", "master", base.child("ca"))
        status, out, err = runCli("agent", "list",
                                  environ={"WAZUH_HOME": home.root.path})
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(defaultHome({"WAZUH_HOME": "/x"}), "/x")

    def test_varOssec(self):
        """
        Without C{$WAZUH_HOME}, C{/var/ossec} is the default when it exists.
        """
        fake = FilePath(self.mktemp())
        self.patch(cli, "WAZUH_DEFAULT_HOME", fake.path)
        self.assertIsNone(defaultHome({}))
        fake.makedirs()
        self.assertEqual(defaultHome({}), fake.path)

    def test_noHome(self):
        """
        Without any home, a command that needs one says how to give it, in
        one line, with status 2.
        """
        self.patch(cli, "WAZUH_DEFAULT_HOME", FilePath(self.mktemp()).path)
        status, out, err = runCli("check-config")
        self.assertEqual((status, out), (2, ""))
        self.assertEqual(err, "wazuh-cluster check-config: no node home: pass --home H "
                              "or set WAZUH_HOME\n")


class ControlOptionsTests(SynchronousTestCase):
    """
    C{control}'s options, as Wazuh's cluster_control takes them.
    """

    def setUp(self):
        base = FilePath(self.mktemp())
        self.home = initNode(base.child("m"), "master", "master", base.child("ca")).root.path

    def test_noOptionPrintsHelp(self):
        """
        Without an option, the help is printed and the exit status is 0.
        """
        status, out, err = runCli("control", "--home", self.home)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("--list-nodes", out)

    def test_statusFilterNeedsAgents(self):
        """
        C{-fs} without C{-a} is cluster_control's "Wrong arguments.", exit 1.
        """
        for argv in (["-fs", "active"], ["-l", "-fs", "active"]):
            status, out, err = runCli("control", "--home", self.home, *argv)
            self.assertEqual((status, out), (1, ""))
            self.assertIn("Wrong arguments.", err)
            self.assertEqual(len(err.splitlines()), 1)

    def test_badHealthArgument(self):
        """
        C{-i bogus} is a usage error in one line, no traceback.
        """
        status, out, err = runCli("control", "--home", self.home, "-i", "bogus")
        self.assertEqual((status, out), (2, ""))
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("'-i more'", err)

    def test_wazuhLongNames(self):
        """
        cluster_control's long option names are accepted as well as ours.
        """
        parser = buildParser()
        args = parser.parse_args(["control", "--list-agents", "--filter-agent-status",
                                  "active", "--filter-node", "w1", "w2"])
        self.assertEqual((args.agents, args.statuses, args.nodes),
                         (True, ["active"], ["w1", "w2"]))
        self.assertTrue(parser.parse_args(["control", "--list-nodes"]).list)
        self.assertEqual(parser.parse_args(["control", "--health", "more"]).health, "more")
        self.assertTrue(parser.parse_args(["control", "--list"]).list)
        self.assertTrue(parser.parse_args(["control", "--agents", "--filter-status",
                                           "active"]).agents)

    def test_notRunningJson(self):
        """
        With no daemon, C{--json} prints a JSON error object on stdout, the
        line on stderr, and exits 1.
        """
        status, out, err = runCli("control", "--home", self.home, "-l", "--json")
        self.assertEqual(status, 1)
        self.assertEqual(json.loads(out), {"error": 3012,
                                           "message": "Cluster is not running."})
        self.assertEqual(err, "Cluster is not running.\n")


    def test_brokenConfigurationJson(self):
        """
        With C{--json}, a configuration error is a JSON error object too.
        """
        conf = NodeHome.fromPath(self.home).ossecConf
        conf.setContent(conf.getContent().replace(b"<port>1516", b"<port>80"))
        status, out, err = runCli("control", "--home", self.home, "-l", "--json")
        self.assertEqual(status, 1)
        self.assertEqual(json.loads(out)["error"], 3004)
        self.assertIn("Port must be higher than 1024", err)


class ControlAnswersTests(TestCase):
    """
    L{controlCommand} against a real control socket: every error exits 1,
    with the JSON error object on stdout under C{--json}.
    """

    def setUp(self):
        base = shortBase(self)
        self.home = initNode(base.child("m"), "master", "master", base.child("ca"))
        self.cluster = InMemoryCluster(self)
        self.worker = self.cluster.addWorker("worker1")
        self.cluster.addWorker("worker2")

    def serve(self, handlerFactory):
        server = ControlServer(self.home.controlSocket, handlerFactory, reactor)
        server.startService()
        self.addCleanup(server.stopService)

    @inlineCallbacks
    def ask(self, *argv):
        args = buildParser().parse_args(["control", *argv])
        out, err = io.StringIO(), io.StringIO()
        status = yield controlCommand(reactor, self.home, args, out, err)
        return status, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def test_workerWithoutMaster(self):
        """
        A worker whose master is down answers 3023: exit 1, the line on
        stderr, and with C{--json} C{{"error": 3023, "message": ...}}.
        """
        self.cluster.network.masterUp = False
        self.cluster.master.workers["worker1"].transport.loseConnection()
        self.cluster.network.flush()
        self.serve(lambda: WorkerLocalHandler(self.worker))
        status, out, err = yield self.ask("-l")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "Error 3023 - Worker node is not connected to master\n")
        status, out, err = yield self.ask("-l", "--json")
        self.assertEqual(status, 1)
        self.assertEqual(json.loads(out), {
            "error": 3023, "message": "Worker node is not connected to master"})

    @inlineCallbacks
    def test_badStatusFilter(self):
        """
        C{-a -fs bogus} is an error: exit 1.
        """
        self.serve(lambda: MasterLocalHandler(self.cluster.master))
        status, out, err = yield self.ask("-a", "-fs", "bogus")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("Invalid agent status 'bogus'", err)
        status, out, err = yield self.ask("-a", "-fs", "bogus", "--json")
        self.assertEqual((status, json.loads(out)["error"]), (1, 1000))

    @inlineCallbacks
    def test_unknownNode(self):
        """
        C{-l -fn nosuch} is Wazuh's C{Error 1730 - Node does not exist},
        exit 1.
        """
        self.serve(lambda: MasterLocalHandler(self.cluster.master))
        status, out, err = yield self.ask("-l", "-fn", "nosuch")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "Error 1730 - Node does not exist: nosuch\n")

    @inlineCallbacks
    def test_filteredHealth(self):
        """
        C{-i more -fn worker1} says "Connected nodes (1)" and lists that
        node only.
        """
        self.serve(lambda: MasterLocalHandler(self.cluster.master))
        status, out, err = yield self.ask("-i", "more", "-fn", "worker1")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Connected nodes (1):", out)
        self.assertIn("    worker1 (", out)
        self.assertNotIn("worker2", out)
        status, out, err = yield self.ask("-i", "--json", "-fn", "worker1")
        self.assertEqual(json.loads(out)["n_connected_nodes"], 1)


class ControlProcessTests(TestCase):
    """
    C{wazuh-cluster control} as a process, on a worker whose master is
    down.
    """

    timeout = 60

    @inlineCallbacks
    def test_exitStatus(self):
        """
        The process exits 1 with the 3023 line, and prints the JSON error
        object with C{--json}.
        """
        cluster = ClusterProcesses(self, workers=("worker1",))
        cluster.start("worker1")
        home = cluster.homes["worker1"].root.path

        @inlineCallbacks
        def answers():
            out, err, status = yield cluster.cli("control", "--home", home, "-l")
            return b"Error 3023" in err

        yield cluster.waitFor(answers)
        out, err, status = yield cluster.cli("control", "--home", home, "-l")
        self.assertEqual((out, err, status),
                         (b"", b"Error 3023 - Worker node is not connected to master\n", 1))
        out, err, status = yield cluster.cli("control", "--home", home, "-l", "--json")
        self.assertEqual(status, 1)
        self.assertEqual(json.loads(out)["error"], 3023)


# ---------------------------------------------------------------------------
# User mistakes, for every subcommand


NOBODY = pwd.getpwnam("nobody")


def runAsNobody(argv):
    """
    Run C{wazuh-cluster ARGV} in a child process that dropped to the user
    C{nobody} (root would bypass permissions).

    @return: C{(status, stdout, stderr)}; a traceback from the child shows
        in stderr.
    """
    readEnd, writeEnd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.close(readEnd)
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            out, err = io.StringIO(), io.StringIO()
            try:
                status = run(list(argv), out, err, environ={})
            except BaseException:
                status = 99
                err.write(traceback.format_exc())
            data = json.dumps([status, out.getvalue(), err.getvalue()]).encode()
            with os.fdopen(writeEnd, "wb") as pipe:
                pipe.write(data)
        finally:
            os._exit(0)
    os.close(writeEnd)
    with os.fdopen(readEnd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return tuple(json.loads(data))


def commands(home, ca):
    """
    Every subcommand, on C{home} (and the CA directory C{ca} for init).
    """
    return {
        "init": ["init", "--home", home, "--type", "master", "--name", "master",
                 "--ca", ca, "--port", "1600"],
        "check-config": ["check-config", "--home", home],
        "control": ["control", "--home", home, "-l"],
        "agent add": ["agent", "add", "--home", home, "--name", "web1"],
        "agent remove": ["agent", "remove", "--home", home, "--id", "001"],
        "agent group": ["agent", "group", "--home", home, "--id", "001", "--set", "default"],
        "agent list": ["agent", "list", "--home", home],
        "agent report": ["agent", "report", "--home", home, "--id", "001"],
        "demo": ["demo", "--dir", home],
    }


class UserMistakeTests(SynchronousTestCase):
    """
    Every subcommand given a file where a directory is expected, a missing
    home, or a home it cannot write: one line on stderr, a non-zero exit
    status, no traceback.
    """

    def setUp(self):
        self.base = shortBase(self)
        self.file = self.base.child("file")
        self.file.setContent(b"a file, not a directory")

    def assertOneLine(self, what, result):
        status, out, err = result
        self.assertNotEqual(status, 0, (what, out, err))
        self.assertNotIn("Traceback", err, what)
        self.assertEqual(len(err.splitlines()), 1, (what, err))

    def test_fileForDirectory(self):
        """
        A file given as the home (or as init's CA directory, or the demo's
        directory) is refused in one line; init then creates no CA.
        """
        ca = self.base.child("ca")
        for what, argv in commands(self.file.path, ca.path).items():
            self.assertOneLine(what, runCli(*argv))
        self.assertFalse(ca.exists())
        home = self.base.child("home")
        self.assertOneLine("init --ca FILE", runCli(*commands(home.path, self.file.path)["init"]))
        self.assertFalse(home.exists())

    def test_missingHome(self):
        """
        A home that does not exist is refused in one line (init and demo
        create theirs, so they are not asked).
        """
        missing = self.base.child("missing").path
        for what, argv in commands(missing, self.base.child("ca").path).items():
            if what not in ("init", "demo"):
                self.assertOneLine(what, runCli(*argv))
        self.assertFalse(self.base.child("missing").exists())

    def test_unwritableHome(self):
        """
        As an unprivileged user, a node home that user can read but not
        write is refused in one line by every subcommand; init removes the
        CA directory it had just created.
        """
        home = initNode(self.base.child("home"), "master", "master",
                        self.base.child("ca")).root
        for path in [home, *home.walk()]:
            os.chown(path.path, NOBODY.pw_uid, NOBODY.pw_gid)
            mode = os.stat(path.path).st_mode & 0o777
            path.chmod(mode & ~0o222)
        scratch = self.base.child("scratch")
        scratch.makedirs()
        os.chown(scratch.path, NOBODY.pw_uid, NOBODY.pw_gid)
        freshCa = scratch.child("ca")
        for what, argv in commands(home.path, freshCa.path).items():
            self.assertOneLine(what, runAsNobody(argv))
        self.assertFalse(freshCa.exists())
        self.assertEqual(NodeHome(home).ossecConf.getContent().count(b"<port>1516</port>"), 1)
        newHome = home.child("new").path
        self.assertOneLine("init below", runAsNobody(commands(newHome, freshCa.path)["init"]))
        self.assertFalse(freshCa.exists())
