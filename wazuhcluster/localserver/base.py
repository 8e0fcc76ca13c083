# -*- test-case-name: tests.test_localserver -*-
"""
What the local servers of a master and a worker both answer:

  - C{get_config}: the node's C{<cluster>} configuration as Wazuh's
    C{read_cluster_config} returns it (the key included, as Wazuh does:
    the socket is 0660);
  - C{get_hash}: the ruleset's hashes (C{{"etc/rules/x.xml": "<md5>"}} for
    every file of C{etc/rules}, C{etc/decoders} and C{etc/lists}), which
    the Wazuh API compares between nodes;
  - this project's own requests (L{OWN_COMMANDS}: C{get_agents},
    C{refresh_grp} for C{refresh_agent_groups}, C{sync_ainfo} for
    C{sync_agent_info}): the payload a JSON object of arguments, the reply
    C{ok} with the JSON answer of the node's control handler
    (L{wazuhcluster.control}).

Errors are C{err} replies in Wazuh's JSON exception encoding; the texts of
this project's own failures (C{Error 1730 - Node does not exist: x}) keep
their code.
"""

import hashlib
import re
from functools import partial

from twisted.internet.defer import maybeDeferred
from twisted.python.failure import Failure

from wazuhcluster.commands import ControlFailed, RelayFailed
from wazuhcluster.errors import ClusterError
from wazuhcluster.wazuhlocal.handlers import CommandTable
from wazuhcluster.wazuhlocal.wazuhjson import dumps, loads

#: The largest request payload decoded as JSON (Wazuh's clients send small
#: ones; a DAPI request is a few kilobytes).
MAX_REQUEST_JSON = 1024 * 1024

#: The commands of this project's own requests (a command has at most 11
#: bytes): request name -> command.
OWN_COMMANDS = {
    "get_agents": b"get_agents",
    "refresh_agent_groups": b"refresh_grp",
    "sync_agent_info": b"sync_ainfo",
    "get_master_role": b"master_role",
    "switchover": b"switchover",
}

#: Command -> request name.
OWN_REQUESTS = {command: name for name, command in OWN_COMMANDS.items()}

#: The directories whose files C{get_hash} hashes.
RULESET_DIRECTORIES = ("etc/rules", "etc/decoders", "etc/lists")

#: The most files C{get_hash} hashes.
MAX_RULESET_FILES = 100000

_CODED = re.compile(r"Error (\d+) - (.*)\Z", re.DOTALL)


def requestJson(payload, maxSize=MAX_REQUEST_JSON):
    """
    The JSON value of a request's payload (L{None} for an empty one).

    @raise ClusterError: 3036 when it is not JSON or too large.
    """
    if not payload.strip():
        return None
    return loads(payload, maxSize=maxSize)


def asClusterError(error):
    """
    The L{ClusterError} to send for C{error} (an exception or a
    L{Failure}): a L{ControlFailed} or L{RelayFailed} text
    C{Error N - text} keeps its code and text; any other exception is
    Wazuh's internal error 1000.
    """
    if isinstance(error, Failure):
        error = error.value
    if isinstance(error, ClusterError):
        return error
    if isinstance(error, (ControlFailed, RelayFailed)):
        match = _CODED.match(str(error))
        if match is not None:
            return ClusterError(match.group(2), int(match.group(1)))
    return ClusterError(str(error) or type(error).__name__, 1000)


def failWith(failure):
    """
    An errback raising L{asClusterError} of C{failure}.
    """
    raise asClusterError(failure)


def configObject(config):
    """
    The node's C{<cluster>} block as Wazuh's C{get_config} answers it.

    @type config: L{wazuhcluster.ossecconf.ClusterConfig}
    """
    return {
        "name": config.name,
        "node_name": config.node_name,
        "node_type": config.node_type,
        "key": config.key,
        "port": config.port,
        "bind_addr": config.bind_addr,
        "nodes": list(config.nodes),
        "hidden": "yes" if config.hidden else "no",
        "disabled": config.disabled,
    }


def rulesetHashes(home, fileset, maxFiles=MAX_RULESET_FILES):
    """
    The MD5 of every file of the ruleset directories (blocking: run it in a
    thread), by path relative to the home; excluded files, symbolic links
    and what is not a regular file are skipped.

    @type home: L{wazuhcluster.home.NodeHome}
    @type fileset: L{wazuhcluster.clusteritems.FileSet}
    @rtype: L{dict}
    """
    hashes = {}
    for relpath in RULESET_DIRECTORIES:
        root = home.child(relpath)
        if not root.isdir() or root.islink():
            continue
        for path in root.walk(descend=lambda p: not p.islink()):
            if path.islink() or not path.isfile() or fileset.isExcluded(path.basename()):
                continue
            if len(hashes) >= maxFiles:
                raise ClusterError(f"More than {maxFiles} ruleset files to hash", 3000)
            digest = hashlib.md5(usedforsecurity=False)
            try:
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1024 * 1024), b""):
                        digest.update(block)
            except OSError:
                continue
            hashes["/".join(path.segmentsFrom(home.root))] = digest.hexdigest()
    return hashes


class NodeLocalHandler(CommandTable):
    """
    One local client's connection to a node: the commands both node types
    answer.  Subclasses add theirs to L{commands}.

    @ivar node: the L{wazuhcluster.node.NodeService}.
    @ivar control: the node's control handler (C{answer(request,
        arguments)}).
    """

    #: This project's own requests this node answers.
    ownRequests = ()

    def __init__(self, node, control):
        super().__init__({b"get_config": self.getConfig, b"get_hash": self.getHash})
        self.node = node
        self.control = control
        self.clock = node.clock
        for name in self.ownRequests:
            self.commands[OWN_COMMANDS[name]] = partial(self._ownRequest, name=name)

    def getConfig(self, protocol, payload):
        return b"ok", dumps(configObject(self.node.config))

    def getHash(self, protocol, payload):
        d = self.node.runInThread(rulesetHashes, self.node.home, self.node.items.fileset)
        d.addCallback(self.answered)
        return d

    def answered(self, value):
        """
        The C{ok} reply of a JSON-able C{value} (or of JSON bytes).
        """
        if isinstance(value, bytes):
            return b"ok", value
        return b"ok", dumps(value)

    def ask(self, request, arguments):
        """
        Ask the node's control handler; failures become L{ClusterError}s.

        @return: a Deferred firing with the JSON-able answer.
        """
        d = maybeDeferred(self.control.answer, request, arguments)
        return d.addErrback(failWith)

    def _ownRequest(self, protocol, payload, name):
        arguments = requestJson(payload)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ClusterError(f"The arguments of {name} must be a JSON object", 3038)
        d = self.ask(name, arguments)
        d.addCallback(self._encoded)
        return d

    def _encoded(self, value):
        if isinstance(value, bytes):
            return b"ok", value
        return self.node.runInThread(dumps, value).addCallback(lambda data: (b"ok", data))
