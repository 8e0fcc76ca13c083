# -*- test-case-name: tests.test_localserver -*-
"""
What the master's local server answers (besides L{NodeLocalHandler}'s
commands), as Wazuh's master does:

  - C{get_nodes <json>}: C{{"items": [{"name", "type", "version", "ip"}],
    "totalItems": N}}, with Wazuh's C{filter_node}, C{filter_type},
    C{select}, C{sort}, C{search}, C{offset} and C{limit};
  - C{get_health <null | [names]>}: C{{"n_connected_nodes": N, "nodes":
    {name: {"info": {...}, "status": {...}}}}};
  - C{dapi <json>}: C{ok "Added request to API requests queue"}, then the
    pushed answer (L{wazuhcluster.localserver.dapi});
  - C{dapi_fwd <node> <json>}: the same for a request meant for worker
    C{<node>} (3022 when it is not connected); the answer comes from the
    master's data, which the workers' own answers come from too;
  - this project's C{get_agents}, C{refresh_agent_groups} and, on a master
    candidate (L{wazuhcluster.standby.control}), C{get_master_role} and
    C{switchover}.

Like Wazuh's master, it does not take C{sendsync}: a master's authd works
on its own.
"""

from wazuhcluster.localserver.base import NodeLocalHandler, requestJson
from wazuhcluster.localserver.dapi import DapiRequests
from wazuhcluster.localserver.shapes import NodesQuery, healthNames
from wazuhcluster.wazuhlocal.wazuhjson import WazuhRemoteError


class MasterLocalHandler(NodeLocalHandler):
    """
    One local client of the master.
    """

    ownRequests = ("get_agents", "refresh_agent_groups", "get_master_role", "switchover")

    def __init__(self, master):
        """
        @param master: the L{wazuhcluster.master.server.MasterService}.
        """
        super().__init__(master, master.control)
        self.commands.update({
            b"get_nodes": self.getNodes,
            b"get_health": self.getHealth,
            b"dapi": self.dapi,
            b"dapi_fwd": self.dapiForward,
        })
        self.dapiRequests = DapiRequests(
            master.clock, lambda: self.ask("get_agents", {}), master.runInThread,
            master.log.withTag("Local Server"))

    def getNodes(self, protocol, payload):
        query = NodesQuery.parse(requestJson(payload))
        d = self.ask("get_nodes", query.ownArguments())
        return d.addCallback(query.answer).addCallback(self.answered)

    def getHealth(self, protocol, payload):
        d = self.ask("get_health", healthNames(requestJson(payload)))
        return d.addCallback(self.answered)

    def dapi(self, protocol, payload):
        return self.dapiRequests.add(protocol, payload)

    def dapiForward(self, protocol, payload):
        node, _, request = payload.partition(b" ")
        name = node.decode("utf-8", "replace")
        if name not in self.node.registry.names():
            raise WazuhRemoteError(3022, name[:256])
        self.dapiRequests.add(protocol, request)
        return b"ok", b"Request forwarded to worker node"
