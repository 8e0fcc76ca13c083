# -*- test-case-name: tests.test_standby_init -*-
"""
What C{wazuh-cluster init} does for masters in standby:

  - C{--nodes H1,H2}: the master candidates, in order, written as the
    C{<nodes>} of C{etc/ossec.conf} (L{parseNodes});
  - C{--database postgresql://USER@HOST:PORT/DB} (a master only), with
    C{--password-file FILE}: the C{agent_store} section of the node's
    C{etc/cluster.json} (L{writeAgentStore}), every other key of the file
    kept.  The password stays in its file (recorded by absolute path); the
    DSN must not hold one.
"""

import json
import os

from twisted.python.filepath import FilePath

from wazuhcluster.agentdb.stores import readPassword
from wazuhcluster.agentstoreitems import dsnProblem, redactDsn
from wazuhcluster.clusteritems import mergeClusterItems
from wazuhcluster.errors import ClusterError, ConfigError
from wazuhcluster.fsutil import atomicWrite


def parseNodes(text, checkHost):
    """
    The master candidates of C{--nodes}: comma-separated addresses.

    @param checkHost: raises L{ConfigError} for an unusable address.
    @rtype: L{tuple}
    @raise ConfigError: an empty list, an empty entry, an address given
        twice, or one C{checkHost} refuses.
    """
    nodes = tuple(part.strip() for part in text.split(","))
    if not any(nodes) or "" in nodes:
        raise ConfigError(f"Invalid --nodes {text!r}: give the master candidates' "
                          "addresses separated by commas, e.g. 10.0.0.1,10.0.0.2")
    for node in nodes:
        checkHost(node)
    repeated = sorted({node for node in nodes if nodes.count(node) > 1})
    if repeated:
        raise ConfigError(f"Invalid --nodes {text!r}: {', '.join(repeated)} is given twice")
    return nodes


def checkDatabase(nodeType, database, passwordFile):
    """
    Check C{--database} and C{--password-file} before anything is written.

    @return: the absolute path of the password file, or L{None}.
    @raise ClusterError: a worker with C{--database}, a password file
        without C{--database}, a DSN that is not C{postgresql://...} or
        holds a password, an unreadable or empty password file.
    """
    if database is None:
        if passwordFile is not None:
            raise ConfigError("--password-file goes with --database")
        return None
    if nodeType != "master":
        raise ConfigError("--database is for a master: a worker keeps its agents in its "
                          "own SQLite database (queue/db/global.db)")
    problem = dsnProblem(database, passwordHint="a file given with --password-file")
    if problem is not None:
        raise ConfigError(f"Invalid --database {redactDsn(database)}: {problem}")
    if passwordFile is None:
        return None
    path = FilePath(os.path.abspath(os.path.expanduser(passwordFile)))
    readPassword(path)
    return path.path


def agentStoreChange(home, database, passwordPath):
    """
    The C{etc/cluster.json} content that selects the PostgreSQL agent store,
    or L{None} when the file already does.

    @param database: the DSN.
    @param passwordPath: the password file's absolute path, or L{None}.
    @rtype: L{bytes} or L{None}
    @raise ClusterError: the existing file cannot be read or is not a JSON
        object.
    """
    path = home.clusterJsonOverrides
    document = {}
    if path.exists():
        try:
            document = json.loads(path.getContent().decode("utf-8-sig"))
        except (OSError, ValueError) as e:
            raise ClusterError(f"{path.path} cannot be updated ({e}); refusing to "
                               "overwrite it", 3004) from None
        if not isinstance(document, dict):
            raise ClusterError(f"{path.path} cannot be updated (not a JSON object); "
                               "refusing to overwrite it", 3004)
    wanted = {"backend": "postgresql", "dsn": database, "password_file": passwordPath or ""}
    if document.get("agent_store") == wanted:
        return None
    document = dict(document, agent_store=wanted)
    mergeClusterItems(document, path.path)
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def writeAgentStore(home, content):
    """
    Write C{etc/cluster.json} (0640).
    """
    atomicWrite(home.clusterJsonOverrides, content, 0o640)


def agentStoreNotes(home, database, passwordPath, created):
    """
    What the user should know after C{init --database}.
    """
    notes = [
        f"The agent database is PostgreSQL {redactDsn(database)}"
        + (f" (password from {passwordPath})" if passwordPath else " (no password)")
        + ": give every master candidate of this cluster the same --database, and "
        "--nodes listing them all."]
    if not created and home.globalDb.exists():
        notes.append(
            f"The agents of {home.globalDb.path} stay there: copy them with "
            f"'wazuh-cluster migrate-agents --home {home.root.path} --to "
            f"{redactDsn(database)}"
            + (f" --password-file {passwordPath}'" if passwordPath else "'")
            + " before this master starts.")
    return tuple(notes)
