# -*- test-case-name: tests.test_agentstore_config -*-
"""
Tests for the C{agent_store} section of cluster.json
(L{wazuhcluster.agentstoreitems}), for opening a node's store from it
(L{wazuhcluster.agentdb.stores}) and for how C{check-config} shows it.
"""

import json

from twisted.internet import defer, reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.pg import passwordDatabase
from wazuhcluster.agentdb import AgentDatabase, openAgentStore, openAgentStoreBlocking
from wazuhcluster.agentstoreitems import AgentStoreItems, redactDsn
from wazuhcluster.checkconfig import formatEffectiveConfig
from wazuhcluster.clusteritems import loadClusterItems, mergeClusterItems
from wazuhcluster.errors import ClusterError, ConfigError
from wazuhcluster.home import NodeHome
from wazuhcluster.ossecconf import parseClusterConfig

DSN = "postgresql://wazuh@db.example:5432/wazuh"


def store(**section):
    """
    The L{AgentStoreItems} of an overrides document with this
    C{agent_store} section.
    """
    return mergeClusterItems({"agent_store": section}, "etc/cluster.json").agentStore


class AgentStoreItemsTests(SynchronousTestCase):
    """
    Validation of C{agent_store} into C{items.agentStore}.
    """

    def test_shippedDefault(self):
        """
        The shipped cluster.json keeps agents in SQLite.
        """
        self.assertEqual(loadClusterItems().agentStore, AgentStoreItems("sqlite", "", ""))
        self.assertEqual(
            loadClusterItems().raw["agent_store"],
            {"backend": "sqlite", "dsn": "", "password_file": ""},
        )

    def test_postgresql(self):
        """
        The postgresql backend takes a DSN and a password file.
        """
        self.assertEqual(
            store(backend="postgresql", dsn=DSN, password_file="etc/agentdb.pass"),
            AgentStoreItems("postgresql", DSN, "etc/agentdb.pass"),
        )
        self.assertEqual(store(backend="wazuh-db"), AgentStoreItems("wazuh-db"))

    def assertError(self, section, *parts):
        error = self.assertRaises(
            ConfigError, mergeClusterItems, {"agent_store": section}, "etc/cluster.json"
        )
        text = str(error)
        self.assertEqual(error.code, 3004)
        self.assertNotIn("\n", text)
        self.assertIn("in etc/cluster.json", text)
        for part in parts:
            self.assertIn(part, text)
        return text

    def test_errors(self):
        """
        An unknown backend, a DSN or password file without the postgresql
        backend, a postgresql backend without a DSN, a DSN that is not a
        PostgreSQL URI, an unknown key and a wrong type are one-line 3004
        errors naming the key and the file.
        """
        self.assertError({"backend": "mysql"}, "'agent_store.backend'", "'mysql'")
        self.assertError({"dsn": DSN}, "'agent_store.dsn'", "postgresql backend only")
        self.assertError({"password_file": "p"}, "'agent_store.password_file'")
        self.assertError({"backend": "postgresql"}, "'agent_store.dsn' is required")
        self.assertError(
            {"backend": "postgresql", "dsn": "mysql://u@h/db"}, "'agent_store.dsn'"
        )
        self.assertError(
            {"backend": "postgresql", "dsn": "postgresql://u@h:5432/"}, "no database"
        )
        self.assertError({"colour": "red"}, "'agent_store.colour'")
        self.assertError({"backend": 1}, "'agent_store.backend'")

    def test_passwordInDsnRefused(self):
        """
        A DSN holding a password is refused, and the error does not quote
        the password.
        """
        text = self.assertError(
            {"backend": "postgresql", "dsn": "postgresql://u:s3cret@h:5432/db"},
            "password_file",
        )
        self.assertNotIn("s3cret", text)

    def test_redactDsn(self):
        """
        L{redactDsn} masks the password of a URI or of a key=value DSN and
        leaves a DSN without one unchanged.
        """
        self.assertEqual(
            redactDsn("postgresql://u:s3cret@h:5432/db"), "postgresql://u:***@h:5432/db"
        )
        self.assertEqual(
            redactDsn("host=h password=s3cret dbname=db"), "host=h password=*** dbname=db"
        )
        self.assertEqual(redactDsn("host=h password='a b' x=1"), "host=h password=*** x=1")
        self.assertEqual(redactDsn(DSN), DSN)

    def test_passwordPath(self):
        """
        A relative password file is under the home; an absolute one is
        itself.
        """
        home = NodeHome(FilePath("/var/ossec"))
        self.assertEqual(
            AgentStoreItems("postgresql", DSN, "etc/pw").passwordPath(home).path,
            "/var/ossec/etc/pw",
        )
        self.assertEqual(
            AgentStoreItems("postgresql", DSN, "/run/pw").passwordPath(home).path, "/run/pw"
        )
        self.assertIsNone(AgentStoreItems().passwordPath(home))

    def test_checkConfigShowsStore(self):
        """
        C{check-config} shows the agent store: backend, DSN with any
        password masked, password file.
        """
        config = parseClusterConfig(
            b"<ossec_config><cluster><key>0123456789abcdef0123456789abcdef</key>"
            b"<nodes><node>10.0.0.1</node></nodes></cluster></ossec_config>"
        )
        items = mergeClusterItems(
            {"agent_store": {"backend": "postgresql", "dsn": DSN, "password_file": "etc/pw"}}
        )
        text = formatEffectiveConfig(config, items)
        self.assertIn(
            "Agent store (cluster.json):\n  backend:       postgresql\n"
            f"  dsn:           {DSN}\n  password_file: etc/pw\n",
            text,
        )
        text = formatEffectiveConfig(config, loadClusterItems())
        self.assertIn("Agent store (cluster.json):\n  backend:       sqlite\n", text)


class OpenAgentStoreTests(TestCase):
    """
    L{openAgentStore} and L{openAgentStoreBlocking} open the store
    C{agent_store} names.
    """

    def setUp(self):
        self.home = NodeHome(FilePath(self.mktemp()))
        self.home.etc.makedirs()

    def items(self, **section):
        if section:
            self.home.clusterJsonOverrides.setContent(
                json.dumps({"agent_store": section}).encode()
            )
        return loadClusterItems(self.home)

    @defer.inlineCallbacks
    def test_sqlite(self):
        """
        The sqlite backend opens C{queue/db/global.db} of the home, through
        threads with a real reactor.
        """
        db = yield openAgentStore(self.home, self.items(), reactor, "m")
        self.addCleanup(db.close)
        self.assertIsInstance(db, AgentDatabase)
        self.assertEqual(db.backend, "sqlite")
        self.assertTrue(self.home.globalDb.exists())
        yield db.addAgent("001", "a", "any", "0" * 64)
        self.assertEqual(len((yield db.listAgents())), 1)

    def passwordItems(self, passwordFile):
        dsn, password = passwordDatabase(self)
        self.home.child("etc/agentdb.pass").setContent(password.encode() + b"\n")
        return self.items(backend="postgresql", dsn=dsn, password_file=passwordFile), password

    @defer.inlineCallbacks
    def test_postgresql(self):
        """
        The postgresql backend connects to the DSN with the password read
        from the password file (relative to the home), through threads or
        blocking.
        """
        items, _ = self.passwordItems("etc/agentdb.pass")
        db = yield openAgentStore(self.home, items, reactor, "m")
        self.addCleanup(db.close)
        self.assertEqual(db.backend, "postgresql")
        yield db.addAgent("001", "a", "any", "0" * 64)
        blocking = openAgentStoreBlocking(self.home, items, "m")
        self.addCleanup(blocking.close)
        self.assertEqual(
            [a["id"] for a in self.successResultOf(blocking.listAgents())], ["001"]
        )
        self.assertFalse(self.home.globalDb.exists())

    @defer.inlineCallbacks
    def test_postgresqlAbsolutePasswordFile(self):
        """
        An absolute password file is read where it is.
        """
        items, _ = self.passwordItems(self.home.child("etc/agentdb.pass").path)
        db = yield openAgentStore(self.home, items, reactor, "m")
        self.addCleanup(db.close)
        self.assertEqual((yield db.listAgents()), [])

    @defer.inlineCallbacks
    def test_wrongPasswordNotShown(self):
        """
        A wrong password fails the opening with a ClusterError that names
        the DSN but never shows the password.
        """
        items, password = self.passwordItems("etc/agentdb.pass")
        wrong = password[::-1] + "x"
        self.home.child("etc/agentdb.pass").setContent(wrong.encode())
        error = yield self.assertFailure(
            openAgentStore(self.home, items, reactor, "m"), ClusterError
        )
        self.assertIn(items.agentStore.dsn, str(error))
        self.assertIn("password authentication failed", str(error))
        self.assertNotIn(wrong, str(error))
        error = self.assertRaises(ClusterError, openAgentStoreBlocking, self.home, items, "m")
        self.assertNotIn(wrong, str(error))

    def test_missingPasswordFile(self):
        """
        A password file that cannot be read fails with a ClusterError naming
        it.
        """
        items = self.items(backend="postgresql", dsn=DSN, password_file="etc/none")
        failure = self.failureResultOf(openAgentStore(self.home, items, reactor, "m"))
        failure.trap(ClusterError)
        self.assertIn("etc/none", str(failure.value))

    def test_wazuhDbBlockingRefused(self):
        """
        The wazuh-db backend is for the daemon: a blocking opening (the
        C{agent} commands) is a clear ClusterError.
        """
        items = self.items(backend="wazuh-db")
        error = self.assertRaises(ClusterError, openAgentStoreBlocking, self.home, items, "m")
        self.assertIn("use Wazuh's own tools", str(error))
