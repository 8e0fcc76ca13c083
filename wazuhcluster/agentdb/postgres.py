# -*- test-case-name: tests.test_agentdb_postgres,tests.test_agentdb -*-
"""
Connections to a PostgreSQL agent store, with C{psycopg} (version 3)
through the same L{twisted.enterprise.adbapi} pool as SQLite.

The password is passed to the driver apart from the DSN (from the
C{agent_store.password_file}); no log line and no error text carries it:
DSNs are shown through L{wazuhcluster.agentstoreitems.redactDsn}, and the
password is scrubbed from any driver message.  A lost connection fails the
call that met it with a L{ClusterError}; the next call reconnects.
"""

import psycopg
from twisted.enterprise import adbapi

from wazuhcluster.agentdb.connection import DATABASE_ERROR, AgentPool
from wazuhcluster.agentdb.dialect import POSTGRESQL
from wazuhcluster.agentstoreitems import redactDsn
from wazuhcluster.errors import ClusterError

#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT = 10

#: What the server sees as the client.
APPLICATION_NAME = "wazuh-cluster"

#: TCP settings that make a silent server (a cut network, a frozen host) a
#: lost connection within seconds instead of a thread blocked for good:
#: keep-alive probes, and at most 15 s of unacknowledged data.
TCP_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
    "tcp_user_timeout": 15000,
}


def _connectArguments(password):
    arguments = {
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": APPLICATION_NAME,
        "autocommit": True,
        **TCP_SETTINGS,
    }
    if password is not None:
        arguments["password"] = password
    return arguments


def connectPostgres(dsn, password=None):
    """
    A configured psycopg connection (blocking).
    """
    connection = psycopg.connect(dsn, **_connectArguments(password))
    try:
        POSTGRESQL.configure(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def postgresPool(dsn, password, reactor):
    """
    The L{AgentPool} of the PostgreSQL database C{dsn}.
    """
    return AgentPool(
        "psycopg",
        dsn,
        reactor=reactor,
        openfun=POSTGRESQL.configure,
        **_connectArguments(password),
    )


def _scrub(text, password):
    if password:
        text = text.replace(password, "***")
    return text


def postgresErrors(dsn, password):
    """
    The translator of psycopg's errors into L{ClusterError}s (and
    L{ValueError} for values the server refuses, such as a NUL character in
    a text), for the database C{dsn}.
    """
    where = redactDsn(dsn)

    def translate(failure):
        error = failure.value
        if isinstance(error, psycopg.DataError):
            raise ValueError(_scrub(f"invalid value: {error}", password))
        if isinstance(error, (psycopg.Error, adbapi.ConnectionLost)):
            detail = " ".join(str(error).split()) or type(error).__name__
            if isinstance(error, adbapi.ConnectionLost):
                detail = "the connection was lost"
            raise ClusterError(
                _scrub(f"Agent database error ({where}): {detail}", password),
                DATABASE_ERROR,
            )
        return failure

    return translate
