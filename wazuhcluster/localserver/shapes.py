# -*- test-case-name: tests.test_localserver -*-
"""
Wazuh's shapes on the local socket: the arguments Wazuh's clients send
(C{get_nodes}, C{get_health}, the C{f_kwargs} of
C{Agent.get_agents_overview}) checked as untrusted input, and the answers
they expect (C{{"items": [...], "totalItems": N}}), built from this
project's own answers (C{{"nodes": [...]}}, C{{"agents": [...]}}).

Every check failure is a L{ClusterError} with Wazuh's code where Wazuh has
one (1724 an unknown select field, 1728 an unknown node type, 1403 an
unknown sort field, 3036 malformed arguments).
"""

from attrs import frozen

from wazuhcluster.errors import ClusterError

#: The fields of a node in C{get_nodes}, in Wazuh's order.
NODE_FIELDS = ("name", "type", "version", "ip")

#: The node types C{filter_type} takes.
NODE_TYPES = ("all", "master", "worker")

#: The most node names a filter may hold, and their longest length.
MAX_NAMES = 1024
MAX_NAME = 256

#: The longest search text.
MAX_SEARCH = 1024

#: What C{Agent.get_agents_overview} may select, and where each comes from
#: in this project's agent rows.
AGENT_FIELDS = {
    "id": "id",
    "name": "name",
    "ip": "ip",
    "status": "status",
    "version": "version",
    "node_name": "node_name",
    "group": "groups",
    "lastKeepAlive": "last_keepalive",
}

#: The agent statuses a filter may name.
AGENT_STATUSES = ("active", "pending", "never_connected", "disconnected")


def malformed(text):
    """
    Wazuh's 3036 for arguments that are not what the command takes.
    """
    return ClusterError(f"JSON couldn't be loaded: {text}", 3036)


def _names(value, what):
    """
    C{None}, a name, a list of names, or a comma-separated text of names
    (C{"all"} meaning no filter), as a tuple or L{None}.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [] if value == "all" else [v for v in value.split(",") if v]
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise malformed(f"{what} must be a list of at most {MAX_NAMES} names")
    for name in value:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise malformed(f"{what} must be a list of names")
    if "all" in value:
        return None
    return tuple(dict.fromkeys(value)) or None


def _count(value, what, allowNone):
    if value is None and allowNone:
        return None
    if type(value) is not int or value < 0:
        raise malformed(f"{what} must be a non-negative integer")
    return value


@frozen
class ListQuery:
    """
    Wazuh's pagination, search, sort and select of a list answer.

    @ivar select: the fields to keep, or L{None} for all of them.
    @ivar sortFields: the fields to sort by (empty: the answer's order).
    @ivar search: a text an item must (or, with C{negation}, must not)
        contain in one of its values, or L{None}.
    """

    select: tuple = None
    sortFields: tuple = ()
    descending: bool = False
    search: str = None
    negation: bool = False
    offset: int = 0
    limit: int = None

    @classmethod
    def parse(cls, arguments, fields):
        """
        Read the C{select}, C{sort}, C{search}, C{offset} and C{limit} of a
        Wazuh request.

        @param fields: the fields an item has.
        """
        select = arguments.get("select")
        if select is not None:
            if isinstance(select, str):
                select = select.split(",")
            if not isinstance(select, list) or not all(isinstance(f, str) for f in select):
                raise malformed("select must be a list of fields")
            unknown = [f for f in select if f not in fields]
            if unknown:
                raise ClusterError(f"Not a valid select field: {', '.join(unknown)}", 1724)
            select = tuple(dict.fromkeys(select))
        sortFields, descending = (), False
        sort = arguments.get("sort")
        if sort is not None:
            if not isinstance(sort, dict) or not isinstance(sort.get("fields", []), list):
                raise malformed("sort must be {\"fields\": [...], \"order\": \"asc\"|\"desc\"}")
            sortFields = tuple(sort.get("fields", []))
            unknown = [f for f in sortFields if f not in fields]
            if unknown:
                raise ClusterError(f"Invalid sort field: {', '.join(map(str, unknown))}", 1403)
            descending = sort.get("order", "asc") == "desc"
        search, negation = None, False
        found = arguments.get("search")
        if found is not None:
            if (not isinstance(found, dict) or not isinstance(found.get("value"), str)
                    or len(found["value"]) > MAX_SEARCH):
                raise malformed("search must be {\"value\": TEXT, \"negation\": BOOL}")
            search, negation = found["value"].lower(), bool(found.get("negation", False))
        return cls(select, sortFields, descending, search, negation,
                   _count(arguments.get("offset", 0) or 0, "offset", False),
                   _count(arguments.get("limit"), "limit", True))

    def apply(self, items):
        """
        @return: Wazuh's C{{"items": [...], "totalItems": N}} of C{items}
            (dicts), C{totalItems} counting before offset and limit.
        """
        if self.search is not None:
            items = [item for item in items
                     if any(self.search in str(value).lower() for value in item.values())
                     != self.negation]
        if self.sortFields:
            items = sorted(items, key=lambda item: tuple(
                str(item.get(f, "")) for f in self.sortFields), reverse=self.descending)
        total = len(items)
        end = None if self.limit is None else self.offset + self.limit
        items = items[self.offset:end]
        if self.select is not None:
            items = [{f: item[f] for f in self.select if f in item} for item in items]
        return {"items": items, "totalItems": total}


@frozen
class NodesQuery:
    """
    The arguments of C{get_nodes}: C{{"filter_node", "offset", "limit",
    "sort", "search", "select", "filter_type", "distinct"}}.

    @ivar names: the nodes asked for, or L{None} for every node.
    """

    names: tuple
    nodeType: str
    listing: ListQuery

    @classmethod
    def parse(cls, value):
        """
        @param value: the decoded payload (L{None} or a dict).
        """
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise malformed("get_nodes takes a JSON object")
        nodeType = value.get("filter_type") or "all"
        if nodeType not in NODE_TYPES:
            raise ClusterError(f"Invalid node type: {str(nodeType)[:40]}", 1728)
        return cls(_names(value.get("filter_node"), "filter_node"), nodeType,
                   ListQuery.parse(value, NODE_FIELDS))

    def ownArguments(self):
        """
        The arguments of this project's C{get_nodes}.
        """
        return {"node_names": list(self.names or ())}

    def answer(self, nodes):
        """
        A master candidate's entry keeps its C{role} (C{active} or
        C{standby}, DESIGN.md "Masters in standby"): one more key, which
        Wazuh's clients ignore.

        @param nodes: this project's answer, C{{"nodes": [...]}}.
        @return: Wazuh's C{{"items": [...], "totalItems": N}}.
        """
        rows = []
        for node in nodes["nodes"]:
            if self.nodeType != "all" and node.get("type") != self.nodeType:
                continue
            row = {f: node.get(f) for f in NODE_FIELDS}
            if "role" in node:
                row["role"] = node["role"]
            rows.append(row)
        return self.listing.apply(rows)


def healthNames(value):
    """
    The argument of C{get_health}: L{None} or a list of node names.

    @return: this project's C{get_health} arguments.
    """
    return {"node_names": list(_names(value, "get_health") or ())}


@frozen
class AgentsQuery:
    """
    The C{f_kwargs} of C{Agent.get_agents_overview}: C{filters} (C{status},
    C{node_name}: C{"all"}, a comma-separated text or a list), C{select},
    C{sort}, C{search}, C{offset}, C{limit}.
    """

    statuses: tuple
    nodes: tuple
    listing: ListQuery

    @classmethod
    def parse(cls, kwargs):
        filters = kwargs.get("filters") or {}
        if not isinstance(filters, dict):
            raise malformed("filters must be an object")
        statuses = _names(filters.get("status"), "filters.status")
        if statuses is not None:
            statuses = tuple(status.lower() for status in statuses)
        unknown = sorted(set(statuses or ()) - set(AGENT_STATUSES))
        if unknown:
            raise ClusterError(
                "Agent status not valid. Valid statuses are active, disconnected, "
                f"pending and never_connected: {unknown[0][:40]}", 1729)
        return cls(statuses, _names(filters.get("node_name"), "filters.node_name"),
                   ListQuery.parse(kwargs, AGENT_FIELDS))

    def answer(self, agents):
        """
        @param agents: this project's answer, C{{"agents": [...]}}.
        @return: Wazuh's C{{"items": [...], "totalItems": N}}; values this
            project does not know are left out, as Wazuh leaves them out.
        """
        rows = []
        for agent in agents["agents"]:
            if self.statuses and agent.get("status") not in self.statuses:
                continue
            if self.nodes and agent.get("node_name") not in self.nodes:
                continue
            rows.append({field: agent[key] for field, key in AGENT_FIELDS.items()
                         if agent.get(key) not in (None, "")})
        return self.listing.apply(rows)
