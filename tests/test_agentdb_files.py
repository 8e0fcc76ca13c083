# -*- test-case-name: tests.test_agentdb_files -*-
"""
Tests for the SQLite file of the agent database: its modes and what
happens when it is damaged (L{wazuhcluster.agentdb.connection}).
"""

import os
import sqlite3
import stat

from twisted.internet import defer, reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from wazuhcluster.agentdb import (
    DATABASE_MODE,
    SCHEMA_VERSION,
    AgentDatabase,
    checkAgentDatabase,
)
from wazuhcluster.errors import ClusterError


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class FileModeTests(TestCase):
    """
    The database, its C{-wal} and its C{-shm} hold the agents' keys: all
    three are 0660, whatever the umask.
    """

    def setUp(self):
        self.path = FilePath(self.mktemp()).child("global.db")

    def withUmask(self, umask):
        previous = os.umask(umask)
        self.addCleanup(os.umask, previous)

    @defer.inlineCallbacks
    def assertModes(self, umask, opener):
        self.withUmask(umask)
        db = yield opener()
        self.addCleanup(db.close)
        yield db.addAgent("001", "a", "any", "0" * 64)
        for suffix in ("", "-wal", "-shm"):
            self.assertEqual(
                (suffix, oct(mode(self.path.path + suffix))),
                (suffix, oct(DATABASE_MODE)),
            )

    def test_threadedUmask022(self):
        """
        Opened by a daemon under umask 022, the three files are 0660.
        """
        return self.assertModes(
            0o022, lambda: AgentDatabase.open(self.path, reactor=reactor, managerName="m")
        )

    def test_blockingUmask077(self):
        """
        Opened by the CLI under umask 077, the three files are 0660.
        """
        return self.assertModes(
            0o077,
            lambda: defer.succeed(AgentDatabase.openBlocking(self.path, managerName="m")),
        )

    @defer.inlineCallbacks
    def test_existingFilesFixed(self):
        """
        An existing database (and WAL files) with another mode are given
        0660 when opened.
        """
        db = AgentDatabase.openBlocking(self.path, managerName="m")
        yield db.close()
        os.chmod(self.path.path, 0o644)
        yield self.assertModes(
            0o022, lambda: AgentDatabase.open(self.path, reactor=reactor, managerName="m")
        )


class CorruptDatabaseTests(TestCase):
    """
    A damaged C{global.db} stops the node with a clear error instead of
    leaving it serving without agents.
    """

    def setUp(self):
        self.path = FilePath(self.mktemp()).child("global.db")
        self.path.parent().makedirs()

    def garbage(self):
        self.path.setContent(os.urandom(8192))

    def assertClear(self, error):
        text = str(error)
        self.assertIsInstance(error, ClusterError)
        self.assertIn(self.path.path, text)
        self.assertIn("is corrupt", text)
        self.assertIn("move the file away", text)
        self.assertIn("rebuilds the agents from client.keys", text)
        self.assertNotIn("\n", text)

    @defer.inlineCallbacks
    def test_openThreaded(self):
        """
        Opening a file of garbage bytes through threads fails with a
        ClusterError saying it is corrupt and what to do.
        """
        self.garbage()
        error = yield self.assertFailure(
            AgentDatabase.open(self.path, reactor=reactor, managerName="m"), ClusterError
        )
        self.assertClear(error)

    def test_openBlocking(self):
        """
        Opening a file of garbage bytes in the CLI raises the same error.
        """
        self.garbage()
        self.assertClear(
            self.assertRaises(ClusterError, AgentDatabase.openBlocking, self.path, "m")
        )

    def test_checkGarbage(self):
        """
        L{checkAgentDatabase} refuses a file of garbage bytes, blocking.
        """
        self.garbage()
        self.assertClear(self.assertRaises(ClusterError, checkAgentDatabase, self.path))

    @defer.inlineCallbacks
    def test_checkDamagedPages(self):
        """
        L{checkAgentDatabase} refuses a database whose header is intact but
        whose pages are damaged.
        """
        db = AgentDatabase.openBlocking(self.path, managerName="m")
        for n in range(1, 400):
            yield db.addAgent(f"{n:03d}", f"agent-{n}", "any", "0" * 64)
        yield db.close()
        content = bytearray(self.path.getContent())
        self.assertGreater(len(content), 4 * 4096)
        content[2 * 4096 : 4 * 4096] = os.urandom(2 * 4096)
        self.path.setContent(bytes(content))
        self.assertClear(self.assertRaises(ClusterError, checkAgentDatabase, self.path))

    @defer.inlineCallbacks
    def test_checkNewerSchema(self):
        """
        L{checkAgentDatabase} refuses a database of a newer schema version.
        """
        db = AgentDatabase.openBlocking(self.path, managerName="m")
        yield db.close()
        connection = sqlite3.connect(self.path.path)
        with connection:
            connection.execute(
                "UPDATE metadata SET value = ? WHERE key = 'db_version'", (SCHEMA_VERSION + 1,)
            )
        connection.close()
        error = self.assertRaises(ClusterError, checkAgentDatabase, self.path)
        self.assertIn("newer than the supported version", str(error))

    @defer.inlineCallbacks
    def test_checkGood(self):
        """
        L{checkAgentDatabase} accepts a missing file (the node creates it)
        and a sound database.
        """
        self.assertIsNone(checkAgentDatabase(self.path))
        self.assertFalse(self.path.exists())
        db = AgentDatabase.openBlocking(self.path, managerName="m")
        yield db.addAgent("001", "a", "any", "0" * 64)
        yield db.close()
        self.assertIsNone(checkAgentDatabase(self.path))
