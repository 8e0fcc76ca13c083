# -*- test-case-name: tests.test_standins -*-
"""
The HTTP API of the wazuh-db stand-in (C{queue/sockets/wdb-http.sock}), on
the L{tests.standins.wdbmodel.WazuhDBModel}: the endpoints recorded in
C{wazuh-db-4.14.7-session.txt}, plus C{POST /v1/agents/sync} (WAZUH.md
section 4.5; its 4.14.7 answers were not recorded).

L{WazuhDBHTTP.handle} maps C{(method, path, body)} to C{(status, body)};
L{WazuhDBResource} serves it with twisted.web.
"""

import json
import re
import sqlite3

from twisted.web.resource import Resource

from tests.standins.wdbmodel import SYNC_COLUMNS, compact

_AGENT_GROUPS = re.compile(r"/v1/agents/(\d+)/groups\Z")
_GROUP_AGENTS = re.compile(r"/v1/agents/ids/groups/([^/]+)\Z")

_SYNC_UPDATE = [c for c in SYNC_COLUMNS if c not in ("id",)]


class WazuhDBHTTP:
    """
    The endpoints, as functions of the model.
    """

    def __init__(self, model):
        self.model = model

    def handle(self, method, path, body):
        """
        @type method: L{str}
        @type path: L{str}
        @type body: L{bytes}
        @return: C{(status, body)}, the body as L{str}.
        """
        db = self.model.db
        if method == "GET" and path == "/v1/agents/ids":
            return 200, compact([n for (n,) in db.execute(
                "SELECT id FROM agent WHERE id > 0 ORDER BY id")])
        if method == "GET" and path == "/v1/agents/sync":
            return 200, self.agentsSync()
        if method == "GET" and path == "/v1/agents/ids/groups":
            data = {}
            for (n,) in db.execute("SELECT DISTINCT id_agent FROM belongs ORDER BY id_agent"):
                data[str(n)] = self.model.groupsOf(n)
            return 200, compact({"data": data} if data else {})
        match = _AGENT_GROUPS.match(path)
        if method == "GET" and match:
            return 200, compact(self.model.groupsOf(int(match.group(1))))
        match = _GROUP_AGENTS.match(path)
        if method == "GET" and match:
            return 200, compact([n for (n,) in db.execute(
                'SELECT b.id_agent FROM belongs b JOIN "group" g ON g.id = b.id_group '
                "WHERE g.name = ? ORDER BY b.id_agent", (match.group(1),))])
        if method == "POST" and path == "/v1/agents/summary":
            return 200, self.summary(body)
        if method == "POST" and path == "/v1/agents/sync":
            return self.setAgentsSync(body)
        return 404, "Not Found"

    def agentsSync(self):
        """
        Every agent marked for sync, in three lists by mark; then every
        agent is marked synced (read once, lost if the reader drops it).
        """
        db = self.model.db
        result = {}
        syncreq = list(self.model.syncRows("id > 0 AND sync_status = 'syncreq'", ()))
        if syncreq:
            result["syncreq"] = syncreq
        keepalive = [{"id": n, **({"version": v} if v is not None else {})} for n, v in db.execute(
            "SELECT id, version FROM agent WHERE id > 0 AND sync_status = 'syncreq_keepalive' "
            "ORDER BY id")]
        if keepalive:
            result["syncreq_keepalive"] = keepalive
        status = []
        for row in db.execute(
                "SELECT id, version, connection_status, disconnection_time, status_code "
                "FROM agent WHERE id > 0 AND sync_status = 'syncreq_status' ORDER BY id"):
            keys = ("id", "version", "connection_status", "disconnection_time", "status_code")
            status.append({k: v for k, v in zip(keys, row, strict=True) if v is not None})
        if status:
            result["syncreq_status"] = status
        db.execute("UPDATE agent SET sync_status = 'synced' WHERE id > 0")
        return compact(result)

    def setAgentsSync(self, body):
        try:
            data = json.loads(body)
        except ValueError:
            return 400, "Invalid JSON"
        db = self.model.db
        try:
            for row in data.get("syncreq", []):
                values = {c: row.get(c) for c in _SYNC_UPDATE}
                values["id"] = row["id"]
                db.execute("UPDATE agent SET " + ", ".join(f"{c} = :{c}" for c in _SYNC_UPDATE)
                           + ", sync_status = 'synced' WHERE id = :id", values)
                if "labels" in row and self.model.agentRow(row["id"]) is not None:
                    self.model.replaceLabels(row["id"], row["labels"])
            for row in data.get("syncreq_keepalive", []):
                db.execute(
                    "UPDATE agent SET last_keepalive = ?, sync_status = 'synced', "
                    "connection_status = 'active', disconnection_time = 0, status_code = 0, "
                    "version = COALESCE(?, version) WHERE id = ?",
                    (self.model.now(), row.get("version"), row["id"]))
            for row in data.get("syncreq_status", []):
                db.execute(
                    "UPDATE agent SET connection_status = ?, sync_status = 'synced', "
                    "disconnection_time = ?, status_code = ?, version = COALESCE(?, version) "
                    "WHERE id = ?",
                    (row.get("connection_status"), row.get("disconnection_time", 0),
                     row.get("status_code", 0), row.get("version"), row["id"]))
        except (KeyError, TypeError, AttributeError) as e:
            return 400, f"Invalid request: {e}"
        except sqlite3.Error as e:  # the answer of wazuh-db's router
            return 500, str(e)
        return 200, ""

    def summary(self, body):
        db = self.model.db
        queries = {
            "agents_by_status": "SELECT id, connection_status FROM agent WHERE id > 0",
            "agents_by_groups": 'SELECT b.id_agent, g.name FROM belongs b JOIN "group" g '
                                "ON b.id_group = g.id WHERE b.id_agent > 0",
            "agents_by_os": "SELECT id, os_platform FROM agent WHERE id > 0",
        }
        wanted = None
        if body.strip():
            wanted = {int(n) for n in re.findall(rb"-?\d+", body)}
        result = {}
        for key, query in queries.items():
            counts = {}
            for n, value in db.execute(query):
                if value is not None and (wanted is None or n in wanted):
                    counts[value] = counts.get(value, 0) + 1
            if wanted is None:
                counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
                if key == "agents_by_status":
                    counts = dict(sorted(counts.items()))
            if counts:
                result[key] = counts
        return compact(result)


class WazuhDBResource(Resource):
    """
    Serve L{WazuhDBHTTP} with twisted.web, every path on this one leaf.

    @ivar gate: a callable C{(method, path)} returning L{None} to answer at
        once, or a Deferred to wait for (the stand-in's slow-answer and
        dropped-connection knobs).
    """

    isLeaf = True

    def __init__(self, http, gate=None):
        super().__init__()
        self.http = http
        self.gate = gate

    def render(self, request):
        from twisted.web.server import NOT_DONE_YET

        method = request.method.decode("ascii")
        path = request.path.decode("utf-8", "replace")
        status, body = self.http.handle(method, path, request.content.read())
        wait = self.gate(method, path, request) if self.gate is not None else None
        if wait is None:
            return self._finish(request, status, body)

        def answer(_):
            if not request._disconnected:
                request.write(self._finish(request, status, body))
                request.finish()

        wait.addCallback(answer)
        return NOT_DONE_YET

    def _finish(self, request, status, body):
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return body.encode("utf-8")
