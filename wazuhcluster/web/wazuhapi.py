# -*- test-case-name: tests.test_web -*-
"""
The cluster endpoints of the Wazuh REST API (WAZUH.md section 7.3), in its
JSON shapes, answered from a node's control handler (the master's own
state; a worker forwards to its master, as C{wazuh-cluster control} does):

  - C{GET /cluster/nodes} (C{nodes_list}, C{offset}, C{limit}, C{sort},
    C{select}, C{type}): C{{name, type, version, ip}} items;
  - C{GET /cluster/healthcheck} (C{nodes_list}): C{{info, status}} items
    (and C{reactor_lag}), sorted by name;
  - C{GET /cluster/status}: C{{"enabled": "yes", "running": "yes"}};
  - C{GET /cluster/local/info}: C{{node, cluster, type}};
  - C{GET /cluster/ruleset/synchronization} (C{nodes_list}): C{{name,
    synced}}, a worker being synced when its files are the master's
    current ones (its integrity session's C{integrity_in_sync}).

Lists are the Wazuh API's C{AffectedItemsWazuhResult}::

    {"data": {"affected_items": [...], "total_affected_items": N,
              "total_failed_items": F, "failed_items": [...]},
     "message": "...", "error": 0 | 1 (all failed) | 2 (some failed)}

where a name of C{nodes_list} that is no node is a failed item with
Wazuh's error 1730.
"""

from twisted.internet.defer import maybeDeferred

from wazuhcluster.web.resource import Query, badRequest

#: The Wazuh API's default and largest C{limit}.
DEFAULT_LIMIT = 500
MAX_LIMIT = 100_000

#: Wazuh's error 1730.
NODE_DOES_NOT_EXIST = (
    1730, "Node does not exist",
    "Make sure the name is correct and that the node is up. You can check it using "
    "`cluster_control -l` (or `wazuh-cluster control -l`)")

NODE_FIELDS = ("name", "type", "version", "ip")


class AffectedItems:
    """
    The Wazuh API's result of a list: affected items, failed ones grouped by
    error, a message for all, some or none.
    """

    def __init__(self, allMessage, someMessage, noneMessage):
        self.messages = (allMessage, someMessage, noneMessage)
        self.items = []
        self.total = None
        self._failed = {}

    def fail(self, itemId, error):
        """
        @param error: C{(code, message, remediation)}.
        """
        self._failed.setdefault(error, []).append(itemId)

    def render(self):
        total = len(self.items) if self.total is None else self.total
        failedCount = sum(len(ids) for ids in self._failed.values())
        failed = []
        for (code, message, remediation), ids in sorted(self._failed.items()):
            error = {"code": code, "message": message}
            if remediation is not None:
                error["remediation"] = remediation
            failed.append({"error": error, "id": sorted(ids)})
        allMessage, someMessage, noneMessage = self.messages
        if total == 0:
            message = noneMessage
        else:
            message = someMessage if failedCount else allMessage
        if total and failedCount:
            errorCode = 2
        elif failedCount and not total:
            errorCode = 1
        else:
            errorCode = 0
        return {
            "data": {
                "affected_items": self.items,
                "total_affected_items": total,
                "total_failed_items": failedCount,
                "failed_items": failed,
            },
            "message": message,
            "error": errorCode,
        }


def _fieldValue(item, path):
    value = item
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def sortItems(items, spec, fields):
    """
    Sort like the Wazuh API's C{sort}: C{+a,-b} (C{+} by default), fields
    among C{fields}.
    """
    keys = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        descending = part.startswith("-")
        name = part.lstrip("+-")
        if name not in fields:
            raise badRequest(f"Not a valid sort field: {name[:100]!r}. Use one of "
                             + ", ".join(fields), code=1403)
        keys.append((name, descending))
    for name, descending in reversed(keys):
        items.sort(key=lambda item: (_fieldValue(item, name) is None,
                                     str(_fieldValue(item, name))), reverse=descending)
    return items


def selectFields(items, spec, fields):
    """
    Keep only the fields of C{select} (dotted for nested ones).
    """
    wanted = [name.strip() for name in spec.split(",") if name.strip()]
    for name in wanted:
        if name not in fields and not any(f.startswith(name + ".") for f in fields):
            raise badRequest(f"Not a valid select field: {name[:100]!r}. Use one of "
                             + ", ".join(fields), code=1724)
    selected = []
    for item in items:
        out = {}
        for name in wanted:
            value = _fieldValue(item, name)
            target = out
            parts = name.split(".")
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        selected.append(out)
    return selected


class ClusterApi:
    """
    The routes of the Wazuh REST API's cluster endpoints for one node.
    """

    def __init__(self, control, config):
        """
        @param control: the node's control handler
            (L{wazuhcluster.control.MasterControlHandler} or
            L{wazuhcluster.control.WorkerControlHandler}).
        @param config: the node's L{wazuhcluster.ossecconf.ClusterConfig}.
        """
        self.control = control
        self.config = config

    def routes(self):
        return {
            "cluster/nodes": self.nodes,
            "cluster/healthcheck": self.healthcheck,
            "cluster/status": self.status,
            "cluster/local/info": self.localInfo,
            "cluster/ruleset/synchronization": self.rulesetSynchronization,
        }

    def _split(self, result, wanted, present):
        """
        Record the names of C{wanted} that are not in C{present} as failed.

        @return: the names to keep (all of C{present} when none is wanted).
        """
        for name in wanted:
            if name not in present:
                result.fail(name, NODE_DOES_NOT_EXIST)
        return [name for name in present if not wanted or name in wanted]

    def nodes(self, request):
        query = Query(request, ("nodes_list", "offset", "limit", "sort", "select", "type",
                                "search", "distinct"))
        wanted = query.names("nodes_list")
        offset = query.integer("offset", 0, 0, 10 ** 9)
        limit = query.integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        nodeType = query.get("type")
        if nodeType not in (None, "master", "worker"):
            raise badRequest("Invalid node type: valid types are `master` and `worker`",
                             code=1728)
        sort, select = query.get("sort"), query.get("select")
        if query.get("search") is not None or query.get("distinct") is not None:
            raise badRequest("search and distinct are not supported by this node")

        def answer(nodes):
            result = AffectedItems("All selected nodes information was returned",
                                   "Some nodes information was not returned",
                                   "No information was returned")
            byName = {node["name"]: node for node in nodes["nodes"]}
            kept = self._split(result, wanted, list(byName))
            items = [dict(byName[name]) for name in kept]
            if nodeType is not None:
                items = [item for item in items if item["type"] == nodeType]
            if sort:
                sortItems(items, sort, NODE_FIELDS)
            result.total = len(items)
            items = items[offset:offset + limit]
            if select:
                items = selectFields(items, select, NODE_FIELDS)
            result.items = items
            return result.render()

        return maybeDeferred(self.control.answer, "get_nodes", {}).addCallback(answer)

    def healthcheck(self, request):
        wanted = Query(request, ("nodes_list",)).names("nodes_list")

        def answer(health):
            result = AffectedItems("All selected nodes healthcheck information was returned",
                                   "Some nodes healthcheck information was not returned",
                                   "No healthcheck information was returned")
            nodes = health["nodes"]
            result.items = [nodes[name] for name in sorted(self._split(result, wanted,
                                                                        list(nodes)))]
            return result.render()

        return maybeDeferred(self.control.answer, "get_health", {}).addCallback(answer)

    def status(self, request):
        Query(request)
        return {"data": {"enabled": "no" if self.config.disabled else "yes",
                         "running": "yes"}, "error": 0}

    def localInfo(self, request):
        Query(request)
        result = AffectedItems("All selected information was returned", "",
                               "No information was returned")
        result.items = [{"node": self.config.node_name, "cluster": self.config.name,
                         "type": self.config.node_type}]
        return result.render()

    def rulesetSynchronization(self, request):
        wanted = Query(request, ("nodes_list",)).names("nodes_list")

        def answer(health):
            result = AffectedItems("Nodes ruleset synchronization status was successfully read",
                                   "Could not read ruleset synchronization status in some "
                                   "nodes", "Could not read ruleset synchronization status")
            nodes = health["nodes"]
            for name in sorted(self._split(result, wanted, list(nodes))):
                entry = nodes[name]
                synced = (entry["info"]["type"] == "master"
                          or bool(entry["status"].get("integrity_in_sync")))
                result.items.append({"name": name, "synced": synced})
            return result.render()

        return maybeDeferred(self.control.answer, "get_health", {}).addCallback(answer)
