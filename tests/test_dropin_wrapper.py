# -*- test-case-name: tests.test_dropin_wrapper -*-
"""
Tests for C{dropin/wazuh-clusterd}, the script that takes the place of a
manager's C{bin/wazuh-clusterd}: run as C{wazuh-control} runs it (C{-t},
then a start that daemonises, then SIGTERM to the pid of
C{var/run/wazuh-clusterd-<pid>.pid}).
"""

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.test_endtoend import environment, freePort
from tests.test_endtoend_dropin import RawClient, frame, listNodes
from wazuhcluster import __version__
from wazuhcluster.nodeinit import initNode

RULES = b"<group name=\"local\"/>\n"

SCRIPT = FilePath(__file__).parent().sibling("dropin").child("wazuh-clusterd")


class WrapperTests(TestCase):
    """
    The script on a master's home, as the manager's
    C{bin/wazuh-clusterd}.
    """

    timeout = 60

    def setUp(self):
        base = FilePath(tempfile.mkdtemp(prefix="wzw-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, base.path, True)
        self.home = initNode(base.child("ossec"), "master", "master01", base.child("ca"),
                             port=freePort(), bindAddr="127.0.0.1")
        self.home.root.child("bin").makedirs()
        self.binary = self.home.root.child("bin").child("wazuh-clusterd")
        SCRIPT.copyTo(self.binary)
        self.binary.chmod(0o755)
        self.env = dict(environment(), WAZUHCLUSTER_PYTHON=sys.executable)
        self.env.pop("WAZUH_HOME", None)

    def run_(self, *argv):
        return getProcessOutputAndValue("/bin/sh", [self.binary.path, *argv], env=self.env,
                                        path=self.home.root.path)

    def pidfiles(self):
        run = self.home.root.descendant(["var", "run"])
        return [p for p in run.children()
                if p.basename().startswith("wazuh-clusterd-") and p.basename().endswith(".pid")]

    @defer.inlineCallbacks
    def test_testAndVersion(self):
        """
        C{-t} checks the home above the script (exit 0, or 1 with the
        problem on stderr); C{-V} prints the version.
        """
        out, err, status = yield self.run_("-t")
        self.assertEqual((status, err), (0, b""))
        conf = self.home.ossecConf
        conf.setContent(conf.getContent().replace(b"<key>", b"<key>x"))
        out, err, status = yield self.run_("-t")
        self.assertEqual(status, 1)
        self.assertIn(b"Key must be 32 characters long", err)
        out, err, status = yield self.run_("-V")
        self.assertEqual(status, 0)
        self.assertIn(__version__.encode(), out)

    @defer.inlineCallbacks
    def test_startAndStop(self):
        """
        Started as wazuh-control starts it (C{-d} passed on as C{--debug}),
        the script returns once the node daemonised; the node writes Wazuh's
        pidfile, answers C{cluster_control -l}'s bytes and C{get_hash} (the
        ruleset hashed in a thread), and stops on the SIGTERM wazuh-control
        sends, removing the pidfile.
        """
        self.home.child("etc/rules/local_rules.xml").setContent(RULES)
        out, err, status = yield self.run_("-d")
        self.assertEqual(status, 0, err)
        for _ in range(200):
            if self.pidfiles():
                break
            yield deferLater(reactor, 0.1, lambda: None)
        [pidfile] = self.pidfiles()
        pid = int(pidfile.getContent())
        self.addCleanup(_kill, pid)
        self.assertEqual(pidfile.basename(), f"wazuh-clusterd-{pid}.pid")
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
        self.assertEqual(argv[-5:], [b"wazuh-master", b"--home", self.home.root.path.encode(),
                                     b"--debug", b""])
        messages = yield deferToThread(listNodes, self.home.controlSocket.path)
        self.assertEqual([n["name"] for n in json.loads(messages[0].payload)["items"]],
                         ["master01"])
        hashes = yield deferToThread(_ask, self.home.controlSocket.path, b"get_hash")
        self.assertEqual(json.loads(hashes.payload), {
            "etc/rules/local_rules.xml": hashlib.md5(RULES).hexdigest()})
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not _alive(pid):
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(_alive(pid))
        self.assertEqual(self.pidfiles(), [])
        self.assertIn("Stopping master node master01. Exit...",
                      self.home.clusterLog.getContent().decode())


def _ask(path, command):
    """
    One request on a local socket, its reply.
    """
    client = RawClient(path)
    try:
        client.send(frame(7, command, b""))
        return client.next()
    finally:
        client.close()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill(pid):
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
