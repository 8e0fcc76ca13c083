# -*- test-case-name: tests.test_agentstore_config -*-
"""
Which agent store a node opens: the C{agent_store} section of its
cluster.json (L{wazuhcluster.agentstoreitems}).

  - C{sqlite}: C{queue/db/global.db} of the home;
  - C{postgresql}: the server of C{agent_store.dsn}, with the password read
    from C{agent_store.password_file};
  - C{wazuh-db}: the Wazuh manager's own wazuh-db beside the node
    (L{wazuhcluster.wazuhdb.store}), for the daemon only: the C{agent}
    commands go to Wazuh's own tools there.
"""

from twisted.internet.defer import fail

from wazuhcluster.agentdb.database import AgentDatabase
from wazuhcluster.errors import ClusterError

#: Longest password file read, in bytes.
MAX_PASSWORD_FILE = 4096


def readPassword(path):
    """
    The password held by a password file: its first line, without the
    line end.

    @type path: L{twisted.python.filepath.FilePath}
    @raise ClusterError: the file cannot be read, is too big or empty.
    """
    try:
        with path.open("rb") as f:
            content = f.read(MAX_PASSWORD_FILE + 1)
    except OSError as e:
        raise ClusterError(
            f"Cannot read the agent store password file {path.path}: "
            f"{e.strerror or e}",
            2000,
        ) from None
    if len(content) > MAX_PASSWORD_FILE:
        raise ClusterError(
            f"The agent store password file {path.path} is too big "
            f"(more than {MAX_PASSWORD_FILE} bytes)",
            2000,
        )
    try:
        password = content.decode("utf-8").splitlines()[0] if content else ""
    except UnicodeDecodeError:
        raise ClusterError(
            f"The agent store password file {path.path} is not UTF-8 text", 2000
        ) from None
    if not password:
        raise ClusterError(
            f"The agent store password file {path.path} is empty", 2000
        )
    return password


def _password(home, store):
    path = store.passwordPath(home)
    return None if path is None else readPassword(path)


def _notAvailable(store):
    return ClusterError(
        f"The {store.backend} agent store cannot be opened by this command: "
        f"use Wazuh's own tools beside a manager",
        2000,
    )


def openAgentStore(home, items, reactor, managerName, log=None):
    """
    Open the agent store of the node at C{home}.

    Every query runs in the reactor's thread pool (tests that need
    deterministic stores inject one opened with L{openAgentStoreBlocking}).

    @type home: L{wazuhcluster.home.NodeHome}
    @param items: the node's L{wazuhcluster.clusteritems.ClusterItems}.
    @param managerName: the name of agent C{000} if the store is created.
    @param log: the node's L{wazuhcluster.logs.ClusterLogger} (the
        wazuh-db store logs what it sets aside).
    @return: a L{Deferred} firing with the store (an
        L{wazuhcluster.agentstore.IAgentStore} provider), or failing with a
        L{ClusterError}.
    """
    store = items.agentStore
    if store.backend == "sqlite":
        return AgentDatabase.open(home.globalDb, reactor=reactor, managerName=managerName)
    if store.backend == "postgresql":
        try:
            password = _password(home, store)
        except ClusterError:
            return fail()
        return AgentDatabase.openPostgres(
            store.dsn, reactor=reactor, managerName=managerName, password=password
        )
    if store.backend == "wazuh-db":
        from wazuhcluster.wazuhdb.store import WazuhDBAgentStore

        return WazuhDBAgentStore.open(home, reactor, log=log)
    return fail(_notAvailable(store))


def openAgentStoreBlocking(home, items, managerName):
    """
    L{openAgentStore} for a process without a reactor (the C{wazuh-cluster
    agent} commands): the store's L{Deferred}s have fired when returned.

    @raise ClusterError: the store cannot be opened.
    """
    store = items.agentStore
    if store.backend == "sqlite":
        return AgentDatabase.openBlocking(home.globalDb, managerName=managerName)
    if store.backend == "postgresql":
        return AgentDatabase.openPostgresBlocking(
            store.dsn, managerName=managerName, password=_password(home, store)
        )
    raise _notAvailable(store)
