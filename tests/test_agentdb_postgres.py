# -*- test-case-name: tests.test_agentdb_postgres -*-
"""
Tests for what only the PostgreSQL backend of L{wazuhcluster.agentdb} has:
a server that can go away, and a password.  (Everything the two backends
share is tested on both in L{tests.test_agentdb}.)
"""

from psycopg.conninfo import conninfo_to_dict
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from tests.pg import adminConnection, freshDatabase, passwordDatabase, waitUntilDropped
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.errors import ClusterError

KEY = "0" * 64


def terminateBackends(dsn):
    """
    End, from the server side, every connection to the database of C{dsn}
    (what a server restart or a network cut does to a client).
    """
    name = conninfo_to_dict(dsn)["dbname"]
    adminConnection().execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
    waitUntilDropped(name)


class ConnectionLossTests(TestCase):
    """
    A lost connection fails the call that meets it with a L{ClusterError};
    the next call reconnects.
    """

    @defer.inlineCallbacks
    def assertReconnects(self, db, dsn):
        self.addCleanup(db.close)
        yield db.addAgent("001", "a", "any", KEY)
        terminateBackends(dsn)
        error = yield self.assertFailure(db.listAgents(), ClusterError)
        self.assertIn("Agent database error", str(error))
        self.assertEqual(error.code, 2000)
        self.assertEqual([a["id"] for a in (yield db.listAgents())], ["001"])
        self.assertEqual((yield db.setAgentGroups("001", ["g1"])), 1)

    @defer.inlineCallbacks
    def test_threaded(self):
        """
        Through the thread pool.
        """
        dsn = freshDatabase(self)
        db = yield AgentDatabase.openPostgres(dsn, reactor=reactor, managerName="m")
        yield self.assertReconnects(db, dsn)

    def test_blocking(self):
        """
        Through the blocking pool of the CLI.
        """
        dsn = freshDatabase(self)
        return self.assertReconnects(
            AgentDatabase.openPostgresBlocking(dsn, managerName="m"), dsn
        )

    @defer.inlineCallbacks
    def test_lostDuringWrite(self):
        """
        A write whose connection is lost stores nothing; the next one does.
        """
        dsn = freshDatabase(self)
        db = yield AgentDatabase.openPostgres(dsn, reactor=reactor, managerName="m")
        self.addCleanup(db.close)
        yield db.reconcileClientKeys([])
        terminateBackends(dsn)
        yield self.assertFailure(db.addAgent("001", "a", "any", KEY), ClusterError)
        yield db.addAgent("002", "b", "any", KEY)
        self.assertEqual([a["id"] for a in (yield db.listAgents())], ["002"])


class UnreachableServerTests(TestCase):
    """
    A server that cannot be reached fails the opening with a one-line
    L{ClusterError} naming the DSN, never the password.
    """

    SECRET = "pw-Zq8-secret"

    @defer.inlineCallbacks
    def test_threaded(self):
        """
        Through the thread pool, a password given apart or in the DSN.
        """
        error = yield self.assertFailure(
            AgentDatabase.openPostgres(
                "postgresql://wazuh@127.0.0.1:1/wazuh", reactor=reactor,
                password=self.SECRET,
            ),
            ClusterError,
        )
        self.assertIn("postgresql://wazuh@127.0.0.1:1/wazuh", str(error))
        self.assertNotIn(self.SECRET, str(error))
        self.assertNotIn("\n", str(error))
        error = yield self.assertFailure(
            AgentDatabase.openPostgres(
                f"postgresql://wazuh:{self.SECRET}@127.0.0.1:1/wazuh", reactor=reactor
            ),
            ClusterError,
        )
        self.assertIn("postgresql://wazuh:***@127.0.0.1:1/wazuh", str(error))
        self.assertNotIn(self.SECRET, str(error))

    def test_blocking(self):
        """
        Through the blocking pool.
        """
        error = self.assertRaises(
            ClusterError, AgentDatabase.openPostgresBlocking,
            f"host=127.0.0.1 port=1 user=wazuh password={self.SECRET} dbname=wazuh",
        )
        self.assertIn("password=***", str(error))
        self.assertNotIn(self.SECRET, str(error))


class PasswordTests(TestCase):
    """
    The password is given apart from the DSN.
    """

    @defer.inlineCallbacks
    def test_password(self):
        """
        A role that logs in with a password over TCP opens the store with
        it, and is refused without it.
        """
        dsn, password = passwordDatabase(self)
        db = yield AgentDatabase.openPostgres(dsn, reactor=reactor, password=password)
        self.addCleanup(db.close)
        yield db.addAgent("001", "a", "any", KEY)
        error = yield self.assertFailure(
            AgentDatabase.openPostgres(dsn, reactor=reactor, password="nope"), ClusterError
        )
        self.assertIn("password authentication failed", str(error))
