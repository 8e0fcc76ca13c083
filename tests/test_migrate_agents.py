# -*- test-case-name: tests.test_migrate_agents -*-
"""
Tests for C{wazuh-cluster migrate-agents} (L{wazuhcluster.agentmigrate}):
a node's SQLite agent database copied into a real PostgreSQL server
(L{tests.pg}).
"""

import io

import psycopg
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.pg import freshDatabase, passwordDatabase
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.cli import run
from wazuhcluster.clientkeys import ClientKey
from wazuhcluster.home import NodeHome

KEY = "0" * 64


def done(d):
    """
    The result of an already-fired Deferred of a blocking database.
    """
    results = []
    d.addBoth(results.append)
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class MigrateAgentsTests(SynchronousTestCase):
    """
    C{migrate-agents} copies everything, in one transaction, and refuses
    to overwrite agents unless told to.
    """

    def setUp(self):
        self.home = NodeHome(FilePath(self.mktemp()))
        self.source = AgentDatabase.openBlocking(self.home.globalDb, managerName="master1")
        self.addCleanup(self.source.close)
        db = self.source
        done(db.reconcileClientKeys(
            [ClientKey(f"{n:03d}", f"agent{n}", "any", f"{n:064x}") for n in range(1, 6)]))
        done(db.setAgentGroups("001", ["g1", "default"]))
        done(db.setAgentGroups("002", ["g2"]))
        done(db.setAgentGroups("002", ["g3"]))
        done(db.reportAgent("003", os={"os_name": "Debian"}, labels={"env": "prod", "t": "1"},
                            nodeName="worker1", now=100))
        done(db.applyGroupAssignments([("099", ["late"], 9)]))

    def migrate(self, *extra):
        out, err = io.StringIO(), io.StringIO()
        status = run(["migrate-agents", "--home", self.home.root.path, *extra], out, err)
        return status, out.getvalue(), err.getvalue()

    def target(self, dsn, password=None):
        db = AgentDatabase.openPostgresBlocking(dsn, managerName="other", password=password)
        self.addCleanup(db.close)
        return db

    def assertSameContent(self, target):
        source = self.source
        for method in ("listAgents", "allGroupAssignments", "globalGroupHash"):
            self.assertEqual(done(getattr(target, method)()), done(getattr(source, method)()))
        for agentId in ("001", "002", "003", "005"):
            self.assertEqual(done(target.getAgent(agentId)), done(source.getAgent(agentId)))

    def test_copy(self):
        """
        Agents (keys, sync state, OS, node), labels, groups with their
        versions, memberships, pending assignments and the manager's row
        are copied; the output says what; later changes continue the
        versions.
        """
        dsn = freshDatabase(self)
        status, out, err = self.migrate("--to", dsn)
        self.assertEqual(status, 1)
        self.assertIn("expected postgresql://USER@HOST:PORT/DB", err)
        uri = self.uri(dsn)
        status, out, err = self.migrate("--to", uri)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out,
            f"Copied {self.home.globalDb.path} to {uri}: 5 agents, 2 labels, 4 groups, "
            "3 group memberships, 1 pending group assignments; group version 9.\n",
        )
        target = self.target(dsn)
        self.assertSameContent(target)
        self.assertEqual(done(target.getAgent("003"))["internal_key"], f"{3:064x}")
        with psycopg.connect(dsn) as connection:
            self.assertEqual(
                connection.execute("SELECT name FROM agent WHERE id = 0").fetchone(),
                ("master1",),
            )
        done(target.reconcileClientKeys(
            [ClientKey(f"{n:03d}", f"agent{n}", "any", f"{n:064x}") for n in range(1, 6)]
            + [ClientKey("099", "agent99", "any", KEY)]))
        self.assertEqual(done(target.getAgent("099"))["groups"], ["late"])
        self.assertEqual(done(target.setAgentGroups("004", ["g9"])), 10)
        self.assertEqual(done(target.addAgent("006", "agent6", "any", KEY, ["newgroup"])), "006")

    def uri(self, dsn):
        """
        The URI form of a key=value DSN of the test server.
        """
        from urllib.parse import quote

        from psycopg.conninfo import conninfo_to_dict

        options = conninfo_to_dict(dsn)
        return (f"postgresql://{options['user']}@{quote(options['host'], safe='')}:"
                f"{options['port']}/{options['dbname']}")

    def test_refuseTargetWithAgents(self):
        """
        A target that already holds agents is refused with one line and
        exit status 1, and left as it was; with C{--replace} it is
        replaced.
        """
        dsn = freshDatabase(self)
        target = self.target(dsn)
        done(target.addAgent("042", "other", "any", KEY, ["gx"]))
        status, out, err = self.migrate("--to", self.uri(dsn))
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("already holds 1 agents: use --replace", err)
        self.assertEqual([a["id"] for a in done(target.listAgents())], ["042"])
        status, out, err = self.migrate("--to", self.uri(dsn), "--replace")
        self.assertEqual((status, err), (0, ""))
        self.assertSameContent(target)
        self.assertEqual(done(target.groupChangesSince(0))[1], 9)

    def test_passwordFile(self):
        """
        The password comes from C{--password-file}; a password in the URI is
        refused without being shown.
        """
        dsn, password = passwordDatabase(self)
        passwordFile = FilePath(self.mktemp())
        passwordFile.setContent(password.encode() + b"\n")
        status, out, err = self.migrate("--to", dsn, "--password-file", passwordFile.path)
        self.assertEqual((status, err), (0, ""))
        self.assertSameContent(self.target(dsn, password))
        withPassword = dsn.replace("@", f":{password}@", 1)
        status, out, err = self.migrate("--to", withPassword)
        self.assertEqual(status, 1)
        self.assertIn("it holds a password: put the password in a file given with "
                      "--password-file", err)
        self.assertNotIn(password, err)

    def test_wrongPassword(self):
        """
        A wrong password fails with one line that does not show it, and
        nothing is copied.
        """
        dsn, password = passwordDatabase(self)
        passwordFile = FilePath(self.mktemp())
        passwordFile.setContent(b"not-the-password")
        status, out, err = self.migrate("--to", dsn, "--password-file", passwordFile.path)
        self.assertEqual(status, 1)
        self.assertIn("password authentication failed", err)
        self.assertNotIn("not-the-password", err)
        self.assertEqual(err.count("\n"), 1)

    def test_noSource(self):
        """
        A home without an agent database is one error line.
        """
        empty = NodeHome(FilePath(self.mktemp()))
        out, err = io.StringIO(), io.StringIO()
        status = run(["migrate-agents", "--home", empty.root.path, "--to",
                      "postgresql://u@127.0.0.1:1/db"], out, err)
        self.assertEqual(status, 1)
        self.assertIn("No agent database at", err.getvalue())
