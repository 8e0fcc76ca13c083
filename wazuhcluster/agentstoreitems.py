# -*- test-case-name: tests.test_agentstore_config -*-
"""
The C{agent_store} section of cluster.json: which backend keeps this node's
agents (DESIGN.md, "Beside a Wazuh manager", "Masters in standby").

    "agent_store": {"backend": "sqlite", "dsn": "", "password_file": ""}

  - C{backend}: C{sqlite} (C{queue/db/global.db}, the default), C{postgresql}
    (the server C{dsn} names) or C{wazuh-db} (the manager's own wazuh-db);
  - C{dsn}: for C{postgresql} only, and required there:
    C{postgresql://USER@HOST:PORT/DB}, never with a password in it;
  - C{password_file}: for C{postgresql} only: a file (relative to the home,
    or absolute) whose first line is the password.

Pure: validation and DSN redaction, no I/O.
"""

import re
from urllib.parse import urlsplit, urlunsplit

from attrs import frozen
from twisted.python.filepath import FilePath

#: The values of C{agent_store.backend}.
BACKENDS = ("sqlite", "postgresql", "wazuh-db")

_URI_SCHEMES = ("postgresql", "postgres")

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


@frozen
class AgentStoreItems:
    """
    The validated C{agent_store} section.

    @ivar backend: one of L{BACKENDS}.
    @ivar dsn: the PostgreSQL URI (C{""} for other backends).
    @ivar password_file: the password file as written (C{""} for none).
    """

    backend: str = "sqlite"
    dsn: str = ""
    password_file: str = ""

    def passwordPath(self, home):
        """
        The password file resolved against the node home.

        @type home: L{wazuhcluster.home.NodeHome}
        @return: a L{twisted.python.filepath.FilePath}, or L{None}.
        """
        if not self.password_file:
            return None
        if self.password_file.startswith("/"):
            return FilePath(self.password_file)
        return home.child(self.password_file)


def redactDsn(dsn):
    """
    A DSN fit for a log line or an error text: any password replaced by
    C{***} (URI or C{key=value} form).
    """
    if not dsn:
        return dsn
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
            if parts.password is None:
                return dsn
            user = parts.username or ""
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
        except ValueError:
            return "(unparsable DSN)"
    return _KEYWORD_PASSWORD.sub(r"\1***", dsn)


def dsnProblem(dsn, passwordHint="agent_store.password_file"):
    """
    What is wrong with a DSN given for the C{postgresql} backend.

    @param passwordHint: where the password belongs instead (named when the
        DSN holds one).

    @return: the problem as text (never quoting a password), or L{None}.
    """
    try:
        parts = urlsplit(dsn)
        parts.port
    except ValueError as e:
        return f"not a valid URI ({e})"
    if parts.scheme not in _URI_SCHEMES:
        return "expected postgresql://USER@HOST:PORT/DB"
    if parts.password is not None:
        return f"it holds a password: put the password in {passwordHint}"
    if not parts.hostname and "host=" not in parts.query:
        return "it names no host"
    if not parts.path.strip("/"):
        return "it names no database"
    return None


def buildAgentStore(section, error):
    """
    Validate the merged C{agent_store} section.

    @param section: the merged JSON object (every key present, strings).
    @param error: makes the L{wazuhcluster.errors.ConfigError} of a text
        (naming the file).
    @rtype: L{AgentStoreItems}
    """
    backend = section["backend"]
    dsn = section["dsn"]
    passwordFile = section["password_file"]
    if backend not in BACKENDS:
        raise error(
            f"Invalid value for 'agent_store.backend': expected one of "
            f"{', '.join(BACKENDS)}, found {backend!r}"
        )
    if backend != "postgresql":
        for key, value in (("dsn", dsn), ("password_file", passwordFile)):
            if value:
                raise error(
                    f"'agent_store.{key}' is set but 'agent_store.backend' is "
                    f"{backend!r}: it is used by the postgresql backend only"
                )
        return AgentStoreItems(backend)
    if not dsn:
        raise error("'agent_store.dsn' is required with the postgresql backend")
    problem = dsnProblem(dsn)
    if problem is not None:
        raise error(f"Invalid value for 'agent_store.dsn': {problem}")
    if "\0" in passwordFile:
        raise error("Invalid value for 'agent_store.password_file'")
    return AgentStoreItems(backend, dsn, passwordFile)
