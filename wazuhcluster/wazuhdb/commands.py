# -*- test-case-name: tests.test_wazuhdb_store -*-
"""
The wazuh-db commands the agent store uses, as recorded
(C{wazuh-db-4.14.7-session.txt}), on a L{WazuhDBClient}: paging over
C{due} answers, requests kept under wazuh-db's 64 KiB, many small requests
run a few at a time.
"""

import json

from twisted.internet.defer import DeferredSemaphore, gatherResults, inlineCallbacks

from wazuhcluster.wazuhdb.classic import MAX_REQUEST
from wazuhcluster.wazuhdb.errors import JSON_ERROR, RETRIEVE_ERROR, WazuhDBError
from wazuhcluster.wazuhdb.rows import BadRow, agentNumber, chunked

#: Bytes of JSON per request, leaving room for the command words.
MAX_JSON = MAX_REQUEST - 1024

#: Requests of one batch in flight at once.
WINDOW = 8

#: Items per batch (bounds the Deferreds alive at once).
BATCH = 2000

#: The wazuh-db error a label of an unknown agent gives; Wazuh ignores it.
FOREIGN_KEY = "FOREIGN KEY constraint failed"


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _firstError(failure):
    """
    The first failure of a L{gatherResults}.
    """
    return failure.value.subFailure if hasattr(failure.value, "subFailure") else failure


class WazuhDBCommands:
    """
    The recorded commands.
    """

    def __init__(self, client, window=WINDOW):
        self.client = client
        self.window = window

    @inlineCallbacks
    def each(self, items, function):
        """
        Run C{function(item)} for every item, at most C{window} at once.

        @return: a Deferred firing with the results, in order.
        """
        results = []
        semaphore = DeferredSemaphore(self.window)
        items = list(items)
        for start in range(0, len(items), BATCH):
            batch = [semaphore.run(function, item) for item in items[start:start + BATCH]]
            done = yield gatherResults(batch, consumeErrors=True).addErrback(_firstError)
            results.extend(done)
        return results

    # -- agents ----------------------------------------------------------------

    @inlineCallbacks
    def agentIds(self):
        """
        @return: a Deferred firing with the set of agent numbers (but 000).
        """
        pages = yield self.client.runPaged(
            lambda last: f"global get-all-agents last_id {last}", _lastOf(lambda r: r["id"]))
        return {_number(row["id"]) for page in pages for row in page or ()}

    def agentRow(self, number):
        """
        @return: a Deferred firing with C{global get-agent-info} of one
            agent, or L{None} when wazuh-db has no such agent.
        """
        d = self.client.run(f"global get-agent-info {number}")

        def first(rows):
            if not isinstance(rows, list) or len(rows) > 1:
                raise WazuhDBError(f"unexpected answer for agent {number}", RETRIEVE_ERROR)
            return rows[0] if rows else None

        return d.addCallback(first)

    @inlineCallbacks
    def agentRows(self, numbers):
        """
        @return: a Deferred firing with C{{number: row or None}}.
        """
        numbers = list(numbers)
        rows = yield self.each(numbers, self.agentRow)
        return dict(zip(numbers, rows, strict=True))

    def insertAgent(self, number, name, ip, key, dateAdd):
        """
        C{global insert-agent}, as wazuh-modulesd inserts client.keys
        agents (C{register_ip}, no C{ip}).
        """
        return self.client.run("global insert-agent " + compact(
            {"id": number, "name": name, "register_ip": ip, "internal_key": key,
             "date_add": dateAdd}))

    @inlineCallbacks
    def activeAgents(self):
        """
        @return: a Deferred firing with the numbers of active agents.
        """
        pages = yield self.client.runPaged(
            lambda last: f"global get-agents-by-connection-status {last} active",
            _lastOf(lambda r: r["id"]))
        return [_number(row["id"]) for page in pages for row in page or ()]

    @inlineCallbacks
    def markedAgentInfo(self, onPage, timeout=None):
        """
        C{global sync-agent-info-get last_id N} until C{ok}: rows marked
        C{syncreq}, each marked synced by wazuh-db as it is returned.

        @param onPage: called with each page's rows before the next is
            asked (to keep them at once: they are no longer marked).
        """
        last = 0
        while True:
            status, payload = yield self.client.query(
                f"global sync-agent-info-get last_id {last}", timeout)
            if status == "err":
                raise WazuhDBError(payload)
            try:
                rows = json.loads(payload) if payload else []
            except ValueError:
                raise WazuhDBError(f"{payload[:80]!r}", JSON_ERROR) from None
            if not isinstance(rows, list):
                raise WazuhDBError("unexpected sync-agent-info-get answer", RETRIEVE_ERROR)
            yield onPage(rows)
            if status == "ok":
                return
            if not rows or _number(rows[-1].get("id")) <= last:
                raise WazuhDBError("sync-agent-info-get does not advance", RETRIEVE_ERROR)
            last = _number(rows[-1]["id"])

    @inlineCallbacks
    def setAgentInfo(self, rows):
        """
        C{global sync-agent-info-set} of full rows, in requests under 64 KiB.
        Wazuh's ignored error (labels of an agent unknown) is ignored.
        """
        for chunk in chunked(rows, compact, MAX_JSON):
            try:
                yield self.client.run("global sync-agent-info-set " + compact(chunk))
            except WazuhDBError as e:
                if FOREIGN_KEY not in (e.detail or ""):
                    raise

    # -- groups ----------------------------------------------------------------

    @inlineCallbacks
    def groupNames(self):
        rows = yield self.client.run("global select-groups")
        return {row["name"] for row in rows or ()}

    @inlineCallbacks
    def ensureGroups(self, names):
        """
        Create the groups wazuh-db does not have yet: C{set-agent-groups}
        fails until every group exists (the recorded quirk).
        """
        wanted = set(names)
        if not wanted:
            return
        missing = sorted(wanted - (yield self.groupNames()))
        for name in missing:
            try:
                yield self.client.run(f"global insert-agent-group {name}")
            except WazuhDBError:
                # Created meanwhile by someone else, or a real failure.
                if name not in (yield self.groupNames()):
                    raise

    @inlineCallbacks
    def setGroups(self, pairs, syncStatus):
        """
        C{global set-agent-groups} in override mode.

        @param pairs: C{(number, [group, ...])}.
        """
        data = [{"id": number, "groups": list(groups)} for number, groups in pairs]
        for chunk in chunked(data, compact, MAX_JSON):
            yield self.client.run("global set-agent-groups " + compact(
                {"mode": "override", "sync_status": syncStatus, "data": chunk}))

    @inlineCallbacks
    def assignments(self, condition="all", setSynced=False):
        """
        C{global sync-agent-groups-get} over every page.

        @return: a Deferred firing with C{({number: [groups]}, wazuhHash)}.
        """
        def command(last):
            return "global sync-agent-groups-get " + json.dumps(
                {"condition": condition, "set_synced": setSynced, "get_global_hash": True,
                 "last_id": last})

        def following(page, last):
            data = _groupsPage(page)[0]
            return _number(data[-1]["id"]) if data else None

        pages = yield self.client.runPaged(command, following)
        result, hashed = {}, None
        for page in pages:
            data, hashed = _groupsPage(page)
            for entry in data:
                groups = entry.get("groups")
                if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                    raise WazuhDBError("unexpected groups", RETRIEVE_ERROR)
                result[_number(entry.get("id"))] = groups
        return result, hashed

    def recalculateHashes(self):
        return self.client.run("global recalculate-agent-group-hashes")


def _number(value):
    try:
        return agentNumber(value)
    except BadRow as e:
        raise WazuhDBError(str(e), RETRIEVE_ERROR) from None


def _lastOf(key):
    def following(page, last):
        if not page:
            return None
        return _number(key(page[-1]))

    return following


def _groupsPage(page):
    if not (isinstance(page, list) and page and isinstance(page[-1], dict)):
        raise WazuhDBError("unexpected sync-agent-groups-get answer", RETRIEVE_ERROR)
    data = page[-1].get("data", [])
    if not isinstance(data, list):
        raise WazuhDBError("unexpected sync-agent-groups-get answer", RETRIEVE_ERROR)
    return data, page[-1].get("hash")
