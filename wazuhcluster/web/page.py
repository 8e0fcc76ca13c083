# -*- test-case-name: tests.test_web -*-
"""
The master's live status page: C{/} is a self-contained HTML page (no
external asset) whose script fetches C{/status.json} every 2 seconds and
updates the page in place; C{/status.json} is L{Overview}: every node with
its connection state, keep-alive age, last syncs and their durations, files
in sync or not, agents per status and reactor lag, the recent syncs and the
master's reactor lag over the last minute (for the charts), and the
master's recent log lines.
"""

import base64
import datetime
import hashlib
import re

from importlib.resources import files
from twisted.internet.defer import gatherResults, maybeDeferred

from wazuhcluster.health import NA, isoDate
from wazuhcluster.web.resource import Query, Raw

#: Log lines the page shows.
PAGE_LOG_LINES = 60

_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def loadPage():
    """
    The page's HTML and its Content-Security-Policy (scripts and styles
    allowed by hash: nothing but the page's own inline code runs).

    @return: a L{Raw}.
    """
    html = files("wazuhcluster.web").joinpath("status.html").read_bytes()
    hashes = {}
    for kind in ("script", "style"):
        hashes[kind] = " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(block).digest()).decode() + "'"
            for block in re.findall(rb"<" + kind.encode() + rb">(.*?)</" + kind.encode() + rb">",
                                    html, re.S))
    policy = (f"default-src 'none'; script-src {hashes['script']}; style-src {hashes['style']}; "
              "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return Raw(html, b"text/html; charset=utf-8",
               ((b"content-security-policy", policy.encode("ascii")),
                (b"x-frame-options", b"DENY")))


def parseDate(text):
    """
    The POSIX time of one of the original's date strings, or L{None} for
    C{n/a}.
    """
    if not isinstance(text, str) or text == NA:
        return None
    try:
        moment = datetime.datetime.strptime(text, _DATE_FORMAT)
    except ValueError:
        return None
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def span(block, start="date_start_master", end="date_end_master", **extra):
    """
    C{{start, end, duration}} of a status block's dates (and C{extra}
    fields copied from it).
    """
    began, ended = parseDate(block.get(start)), parseDate(block.get(end))
    duration = max(ended - began, 0.0) if began is not None and ended is not None else None
    out = {"start": block.get(start, NA), "end": block.get(end, NA), "duration": duration}
    for name, key in extra.items():
        out[name] = block.get(key)
    return out


def syncsOf(status):
    """
    The last syncs of a worker's C{get_health} status block.
    """
    return {
        "integrity_check": span(status.get("last_check_integrity", {})),
        "integrity": span(status.get("last_sync_integrity", {}), files="total_files"),
        "agent_info": span(status.get("last_sync_agentinfo", {}), chunks="n_synced_chunks"),
        "agent_groups": span(status.get("last_sync_agentgroup", {}), "date_start", "date_end",
                             chunks="n_synced_chunks"),
        "agent_groups_full": span(status.get("last_sync_full_agentgroup", {}), "date_start",
                                  "date_end", chunks="n_synced_chunks"),
    }


class Overview:
    """
    C{/status.json}: what the page shows, from the master's C{get_health},
    its agent counts and what it keeps in memory.
    """

    def __init__(self, master, agentCounts, history, recentLog, seen):
        """
        @param master: the L{wazuhcluster.master.server.MasterService}.
        @param agentCounts: its L{wazuhcluster.metrics.AgentCounts}.
        @param history: its L{wazuhcluster.web.history.SyncHistory}.
        @param recentLog: its L{wazuhcluster.web.history.RecentLog}.
        @param seen: its L{wazuhcluster.web.history.SeenWorkers}.
        """
        self.master = master
        self.agentCounts = agentCounts
        self.history = history
        self.recentLog = recentLog
        self.seen = seen

    def __call__(self, request):
        Query(request)
        d = gatherResults([maybeDeferred(self.master.control.answer, "get_health", {}),
                           self.agentCounts.get()], consumeErrors=True)
        d.addCallback(lambda results: self.build(*results))
        return d

    def build(self, health, counts):
        """
        The overview from a C{get_health} answer and agent counts.
        """
        master = self.master
        config = master.config
        now = master.clock.seconds()
        registry = master.registry
        connected = registry.names()
        self.seen.seen(connected, now)
        agents, totals = {}, {}
        for (node, status), count in counts.items():
            agents.setdefault(node, {})[status] = count
            totals[status] = totals.get(status, 0) + count
        nodes = []
        for name, entry in health["nodes"].items():
            info, status = entry["info"], entry["status"]
            isMaster = info["type"] == "master"
            node = {
                "name": name, "type": info["type"], "version": info["version"],
                "ip": info["ip"], "active_agents": info["n_active_agents"],
                "state": "this node" if isMaster else "connected",
                "reactor_lag": entry.get("reactor_lag"),
                "agents": agents.get(name, {}),
            }
            if not isMaster and name in connected:
                keepAlive = registry.session(name, "keepalive")
                node["keepalive_age"] = max(now - keepAlive.last, 0.0)
                node["in_sync"] = bool(status.get("integrity_in_sync"))
                node["syncs"] = syncsOf(status)
            nodes.append(node)
        present = {node["name"] for node in nodes}
        for name, when in sorted(self.seen.lastSeen().items()):
            if name not in present:
                nodes.append({"name": name, "type": "worker", "state": "disconnected",
                              "last_seen": isoDate(when), "agents": agents.get(name, {})})
        nodes.sort(key=lambda node: (node["type"] != "master", node["name"]))
        return {
            "cluster": config.name,
            "node": config.node_name,
            "now": now,
            "generated": isoDate(now),
            "connected_workers": len(connected),
            "agents": totals,
            "agents_by_status": counts.complete,
            "nodes": nodes,
            "syncs": self.history.asList(),
            "lag": master.lag.history(),
            "log": list(self.recentLog.lines)[-PAGE_LOG_LINES:],
        }
