# -*- test-case-name: tests.test_standby_control -*-
"""
Control requests on a master candidate: the master's own handler
(L{wazuhcluster.control.MasterControlHandler}) with the roles added.

  - C{get_nodes} / C{get_health} on the active master: this master is
    C{"type": "master", "role": "active"}, each connected standby
    C{"type": "master", "role": "standby"} (it is not counted in
    C{n_connected_nodes}, which counts workers), and C{get_health} carries
    C{"active_master": {"name", "ip", "since"}};
  - on a standby they are forwarded to the active master over the link
    (the whole cluster's view), or, while the link is down, answered from
    what this standby knows: itself and the active master;
  - C{get_master_role}: this master's role and the active master
    (C{switchover} and C{control -i} ask it);
  - C{switchover} (C{{"to": NODE}}): on the active master, hand the active
    role to the connected standby C{NODE}.
"""

from twisted.internet.defer import maybeDeferred

from wazuhcluster import __version__
from wazuhcluster.commands import ControlFailed
from wazuhcluster.control import asControlFailure
from wazuhcluster.health import nodeInfo
from wazuhcluster.results import callControl
from wazuhcluster.standby.peers import peerCandidate
from wazuhcluster.standby.role import ACTIVE, STANDBY, SWITCHOVER_CODE

#: What a standby forwards to the active master.
FORWARDED = frozenset({"get_nodes", "get_health"})


def _switchoverFailure(text):
    return ControlFailed(f"Error {SWITCHOVER_CODE} - {text}")


class RoleControlHandler:
    """
    A master candidate's control handler.
    """

    def __init__(self, inner, standby):
        """
        @param inner: the master's L{wazuhcluster.control.MasterControlHandler}.
        @param standby: the master's L{wazuhcluster.standby.service.StandbyService}.
        """
        self.inner = inner
        self.standby = standby

    def answer(self, request, arguments):
        d = maybeDeferred(self._dispatch, request, arguments)
        d.addErrback(asControlFailure)
        return d

    def _dispatch(self, request, arguments):
        if request == "get_master_role":
            return self.standby.describe()
        if request == "switchover":
            return self._switchover(arguments)
        if not self.standby.serving and request in FORWARDED:
            link = self.standby.link
            connection = link.connection if link is not None else None
            if connection is not None:
                return callControl(connection, request, arguments)
            return self._standbyAnswer(request, arguments)
        d = self.inner.answer(request, arguments)
        if request == "get_nodes":
            d.addCallback(self._nodeRoles)
        elif request == "get_health":
            d.addCallback(self._healthRoles)
        return d

    # -- the active master ---------------------------------------------------------

    def _roleOf(self, name):
        """
        C{(type, role)} of node C{name} seen from this master.
        """
        master = self.standby.master
        if name == master.config.node_name:
            return "master", ACTIVE if self.standby.arbiter.role == ACTIVE else STANDBY
        connection = master.registry.connection(name)
        if connection is not None and connection.nodeType == "master":
            return "master", STANDBY
        return "worker", None

    def _mark(self, entry, name):
        kind, role = self._roleOf(name)
        entry["type"] = kind
        if role is not None:
            entry["role"] = role
        master = self.standby.master
        if name == master.config.node_name:
            entry["ip"] = self.standby.ownHost
        elif kind == "master":
            # Where workers reach it, rather than where its connection
            # comes from.
            connection = master.registry.connection(name)
            entry["ip"] = peerCandidate(connection.transport, master.config.nodes) or \
                entry["ip"]
        return kind

    def _nodeRoles(self, result):
        for node in result["nodes"]:
            self._mark(node, node["name"])
        return result

    def _healthRoles(self, result):
        standbys = 0
        for name, node in result["nodes"].items():
            if self._mark(node["info"], name) == "master" and \
                    name != self.standby.master.config.node_name:
                standbys += 1
        result["n_connected_nodes"] = max(0, result["n_connected_nodes"] - standbys)
        active = self.standby.arbiter.active
        result["active_master"] = active.asJson() if active is not None else None
        return result

    # -- a standby whose link is down ---------------------------------------------

    def _standbyAnswer(self, request, arguments):
        names = arguments.get("node_names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ControlFailed("Error 3038 - node_names must be a list of names")
        master = self.standby.master
        rows = [(master.config.node_name, STANDBY, self.standby.ownHost)]
        active = self.standby.arbiter.active
        if active is not None and active.name != master.config.node_name:
            rows.append((active.name, ACTIVE, active.host))
        unknown = sorted(set(names) - {row[0] for row in rows})
        if unknown:
            raise ControlFailed(f"Error 1730 - Node does not exist: {', '.join(unknown)}")
        rows = [row for row in rows if not names or row[0] in names]
        if request == "get_nodes":
            return {"nodes": [{"name": name, "type": "master", "version": __version__,
                               "ip": ip, "role": role} for name, role, ip in rows]}
        nodes = {}
        for name, role, ip in rows:
            info = nodeInfo(name, "master", __version__, ip)
            info["role"] = role
            nodes[name] = {"info": info, "status": {}}
        return {"n_connected_nodes": 0, "nodes": nodes,
                "active_master": active.asJson() if active is not None else None}

    # -- switchover ------------------------------------------------------------------

    def _switchover(self, arguments):
        successor = arguments.get("to")
        master = self.standby.master
        me = master.config.node_name
        if not isinstance(successor, str) or not successor:
            raise ControlFailed("Error 3038 - switchover needs the node to hand over to")
        if successor == me:
            raise _switchoverFailure(f"{me} is this master")
        if not self.standby.serving:
            active = self.standby.arbiter.active
            where = f" ({active.name})" if active is not None else ""
            raise _switchoverFailure(f"{me} is a standby: run switchover on the home of the "
                                     f"active master{where}")
        connection = master.registry.connection(successor)
        if connection is None or connection.nodeType != "master":
            standbys = sorted(name for name in master.registry.names()
                              if master.registry.connection(name).nodeType == "master")
            listed = ", ".join(standbys) if standbys else "none"
            raise _switchoverFailure(f"{successor} is not a standby master connected to {me} "
                                     f"(connected standbys: {listed})")
        d = self.standby.arbiter.switchover(successor)
        d.addCallback(lambda _: {"from": me, "to": successor})
        return d
