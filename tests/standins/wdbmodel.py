# -*- test-case-name: tests.test_standins -*-
"""
The state and the classic commands of the wazuh-db stand-in: a SQLite
C{global.db} shaped like wazuh-db's (the columns, in the order
C{global get-agent-info} prints them) and the C{global ...} commands of
C{queue/db/wdb} as recorded in C{wazuh-db-4.14.7-session.txt}.

L{WazuhDBModel.execute} takes one command text and returns the answer text
(C{ok <json>}, C{due <json>}, C{err <message>}), synchronously: the servers
in L{tests.standins.wazuhdb} put it on sockets.
"""

import hashlib
import json
import sqlite3

#: wazuh-db answers at most this many bytes before saying C{due}
#: (WDB_MAX_RESPONSE_SIZE; WAZUH.md section 4.5).
MAX_RESPONSE = 65536 - 512

QUERY_ERROR = "Cannot execute Global database query; "

AGENT_COLUMNS = (
    "id", "name", "ip", "register_ip", "internal_key", "os_name", "os_version",
    "os_major", "os_minor", "os_codename", "os_build", "os_platform", "os_uname",
    "os_arch", "version", "config_sum", "merged_sum", "manager_host", "node_name",
    "date_add", "last_keepalive", "group", "group_hash", "group_sync_status",
    "sync_status", "connection_status", "disconnection_time", "group_config_status",
    "status_code",
)

#: What C{sync-agent-info-get} (and the HTTP C{syncreq} list) returns.
SYNC_COLUMNS = (
    "id", "name", "ip", "os_name", "os_version", "os_major", "os_minor", "os_codename",
    "os_build", "os_platform", "os_uname", "os_arch", "version", "config_sum",
    "merged_sum", "manager_host", "node_name", "last_keepalive", "connection_status",
    "disconnection_time", "group_config_status", "status_code",
)

#: What C{sync-agent-info-set} writes (every other column is kept).
SET_COLUMNS = (
    "config_sum", "ip", "manager_host", "merged_sum", "name", "node_name", "os_arch",
    "os_build", "os_codename", "os_major", "os_minor", "os_name", "os_platform",
    "os_uname", "os_version", "version", "last_keepalive", "connection_status",
    "disconnection_time", "group_config_status", "status_code",
)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS agent (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, ip TEXT, register_ip TEXT,
        internal_key TEXT, os_name TEXT, os_version TEXT, os_major TEXT, os_minor TEXT,
        os_codename TEXT, os_build TEXT, os_platform TEXT, os_uname TEXT, os_arch TEXT,
        version TEXT, config_sum TEXT, merged_sum TEXT, manager_host TEXT,
        node_name TEXT DEFAULT 'unknown', date_add INTEGER NOT NULL, last_keepalive INTEGER,
        "group" TEXT, group_hash TEXT,
        group_sync_status TEXT NOT NULL DEFAULT 'synced'
            CHECK (group_sync_status IN ('synced', 'syncreq')),
        sync_status TEXT NOT NULL DEFAULT 'synced' CHECK (sync_status IN
            ('synced', 'syncreq', 'syncreq_keepalive', 'syncreq_status')),
        connection_status TEXT NOT NULL DEFAULT 'never_connected' CHECK (connection_status IN
            ('pending', 'never_connected', 'active', 'disconnected')),
        disconnection_time INTEGER DEFAULT 0,
        group_config_status TEXT NOT NULL DEFAULT 'not synced'
            CHECK (group_config_status IN ('synced', 'not synced')),
        status_code INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS labels (
        id INTEGER NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (id, key))""",
    """CREATE TABLE IF NOT EXISTS "group" (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE)""",
    """CREATE TABLE IF NOT EXISTS belongs (
        id_group INTEGER NOT NULL REFERENCES "group" (id) ON DELETE CASCADE,
        id_agent INTEGER NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
        priority INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (id_agent, id_group))""",
]


def compact(value):
    """
    JSON as cJSON prints it unformatted.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def groupHash(groups):
    """
    wazuh-db's C{group_hash}: the first 8 hex digits of the SHA-256 of the
    comma-separated groups (C{default} gives C{37a8eec1}, as recorded).
    """
    if not groups:
        return None
    return hashlib.sha256(",".join(groups).encode()).hexdigest()[:8]


class CommandError(Exception):
    """
    Answered C{err <message>}.
    """


class WazuhDBModel:
    """
    The stand-in's database and its classic commands.

    @ivar maxResponse: the C{due} threshold, in bytes (tests lower it to
        page over several chunks).
    """

    def __init__(self, path=":memory:", clock=None, maxResponse=MAX_RESPONSE):
        """
        @param path: the SQLite file (kept across restarts) or C{:memory:}.
        @param clock: a callable returning the time (epoch seconds).
        """
        import time

        self.clock = time.time if clock is None else clock
        self.maxResponse = maxResponse
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA foreign_keys = ON")
        for statement in _SCHEMA:
            self.db.execute(statement)
        self._syncCursor = 0
        self._commands = {
            "insert-agent": self.insertAgent,
            "get-all-agents": self.getAllAgents,
            "get-agent-info": self.getAgentInfo,
            "sync-agent-info-get": self.syncAgentInfoGet,
            "sync-agent-info-set": self.syncAgentInfoSet,
            "set-agent-groups": self.setAgentGroups,
            "sync-agent-groups-get": self.syncAgentGroupsGet,
            "select-groups": self.selectGroups,
            "get-group-agents": self.getGroupAgents,
            "get-distinct-groups": self.getDistinctGroups,
            "recalculate-agent-group-hashes": self.recalculateHashes,
            "insert-agent-group": self.insertAgentGroup,
            "delete-agent": self.deleteAgent,
            "update-connection-status": self.updateConnectionStatus,
            "update-keepalive": self.updateKeepalive,
            "get-agents-by-connection-status": self.agentsByConnectionStatus,
        }

    def now(self):
        return int(self.clock())

    def close(self):
        self.db.close()

    # -- dispatch --------------------------------------------------------------

    def execute(self, text):
        """
        Answer one command.

        @type text: L{str}
        @rtype: L{str}
        """
        actor, _, rest = text.partition(" ")
        if actor == "wazuhdb":
            return "err No agents id provided"
        if actor != "global":
            return f"err Invalid DB query actor: '{actor}'"
        command, _, args = rest.partition(" ")
        function = self._commands.get(command)
        if function is None:
            return f"err Invalid DB query syntax, near '{command}'"
        try:
            return function(args)
        except CommandError as e:
            return f"err {e}"
        except sqlite3.Error as e:
            return f"err {QUERY_ERROR}{e}"

    def _json(self, args):
        try:
            return json.loads(args)
        except ValueError:
            raise CommandError(f"Invalid JSON syntax, near '{args[:32]}'") from None

    def _paged(self, items, encode=compact):
        """
        C{ok} with every item that fits, C{due} when some did not.
        """
        taken = []
        size = len("due ") + 2
        for item in items:
            size += len(encode(item).encode()) + 1
            if taken and size > self.maxResponse:
                return "due " + encode(taken), taken
            taken.append(item)
        return "ok " + encode(taken), taken

    def _lastId(self, args, default=0):
        words = args.split()
        if len(words) >= 2 and words[0] == "last_id" and words[1].lstrip("-").isdigit():
            return int(words[1]), words[2:]
        if words and words[0] == "last_id":
            raise CommandError("Invalid arguments 'last_id' not found")
        return default, words

    # -- agents ----------------------------------------------------------------

    def agentRow(self, number):
        row = self.db.execute(
            "SELECT " + ", ".join(f'"{c}"' for c in AGENT_COLUMNS) + " FROM agent WHERE id = ?",
            (number,)).fetchone()
        if row is None:
            return None
        return {c: v for c, v in zip(AGENT_COLUMNS, row, strict=True) if v is not None}

    def insertAgent(self, args):
        data = self._json(args)
        if not isinstance(data, dict) or type(data.get("id")) is not int or not isinstance(
                data.get("name"), str):
            raise CommandError("Invalid JSON data, missing required fields")
        self.db.execute(
            'INSERT INTO agent (id, name, ip, register_ip, internal_key, "group", date_add) '
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (data["id"], data["name"], data.get("ip"), data.get("register_ip"),
             data.get("internal_key"), data.get("group"), data.get("date_add", self.now())))
        return "ok"

    def deleteAgent(self, args):
        if not args.strip().isdigit():
            raise CommandError("Invalid agent ID")
        self.db.execute("DELETE FROM agent WHERE id = ?", (int(args),))
        return "ok"

    def getAllAgents(self, args):
        last, _ = self._lastId(args)
        ids = self.db.execute("SELECT id FROM agent WHERE id > ? ORDER BY id", (last,))
        return self._paged({"id": n} for (n,) in ids)[0]

    def getAgentInfo(self, args):
        if not args.strip().isdigit():
            raise CommandError("Invalid agent ID")
        row = self.agentRow(int(args))
        return "ok " + compact([] if row is None else [row])

    def labelsOf(self, number):
        return [{"key": k, "value": v} for k, v in self.db.execute(
            "SELECT key, value FROM labels WHERE id = ? ORDER BY key", (number,))]

    def syncRows(self, where, params):
        """
        The C{sync-agent-info-get} rows matching C{where}, nulls left out,
        labels added when the agent has some.
        """
        query = ("SELECT " + ", ".join(SYNC_COLUMNS) + f" FROM agent WHERE {where} ORDER BY id")
        for values in self.db.execute(query, params).fetchall():
            row = {c: v for c, v in zip(SYNC_COLUMNS, values, strict=True) if v is not None}
            labels = self.labelsOf(row["id"])
            if labels:
                row["labels"] = labels
            yield row

    def syncAgentInfoGet(self, args):
        # Without "last_id N", the cursor is wazuh-db's own, kept between
        # calls while the answer is "due".
        last, _ = self._lastId(args, default=None)
        if last is None:
            last = self._syncCursor
        answer, taken = self._paged(
            self.syncRows("id > ? AND sync_status = 'syncreq'", (last,)))
        self.db.executemany("UPDATE agent SET sync_status = 'synced' WHERE id = ?",
                            [(row["id"],) for row in taken])
        self._syncCursor = taken[-1]["id"] if answer.startswith("due") else 0
        return answer

    def syncAgentInfoSet(self, args):
        rows = self._json(args)
        if not isinstance(rows, list):
            raise CommandError("Invalid JSON data, missing required fields")
        sets = ", ".join(f"{c} = :{c}" for c in SET_COLUMNS)
        for row in rows:
            if not isinstance(row, dict) or type(row.get("id")) is not int:
                raise CommandError("Invalid JSON data, missing required fields")
            values = {c: row.get(c) for c in SET_COLUMNS}
            values["id"] = row["id"]
            self.db.execute(f"UPDATE agent SET {sets}, sync_status = 'synced' WHERE id = :id",
                            values)
            if "labels" in row:
                self.replaceLabels(row["id"], row["labels"])
        return "ok"

    def replaceLabels(self, number, labels):
        self.db.execute("DELETE FROM labels WHERE id = ?", (number,))
        for label in labels or []:
            self.db.execute("INSERT INTO labels (id, key, value) VALUES (?, ?, ?)",
                            (number, label["key"], label["value"]))

    def _statusUpdate(self, args, keepalive):
        data = self._json(args)
        if not isinstance(data, dict) or type(data.get("id")) is not int:
            raise CommandError("Invalid JSON data, missing required fields")
        status = data.get("connection_status")
        disconnected = self.now() if status == "disconnected" else 0
        self.db.execute(
            "UPDATE agent SET connection_status = ?, sync_status = ?, status_code = ?, "
            "disconnection_time = ? WHERE id = ?",
            (status, data.get("sync_status", "syncreq"), data.get("status_code", 0),
             disconnected, data["id"]))
        if keepalive:
            self.db.execute("UPDATE agent SET last_keepalive = ? WHERE id = ?",
                            (self.now(), data["id"]))
        return "ok"

    def updateConnectionStatus(self, args):
        return self._statusUpdate(args, keepalive=False)

    def updateKeepalive(self, args):
        return self._statusUpdate(args, keepalive=True)

    def agentsByConnectionStatus(self, args):
        words = args.split()
        if len(words) < 2 or not words[0].isdigit():
            raise CommandError("Invalid arguments")
        ids = self.db.execute(
            "SELECT id FROM agent WHERE id > ? AND connection_status = ? ORDER BY id",
            (int(words[0]), words[1]))
        return self._paged({"id": n} for (n,) in ids)[0]

    # -- groups ----------------------------------------------------------------

    def groupsOf(self, number):
        return [name for (name,) in self.db.execute(
            'SELECT g.name FROM belongs b JOIN "group" g ON g.id = b.id_group '
            "WHERE b.id_agent = ? ORDER BY b.priority", (number,))]

    def insertAgentGroup(self, args):
        name = args.strip()
        if not name:
            raise CommandError("Invalid group name")
        self.db.execute('INSERT INTO "group" (name) VALUES (?)', (name,))
        return "ok"

    def selectGroups(self, args):
        return "ok " + compact([{"name": n} for (n,) in self.db.execute(
            'SELECT name FROM "group" ORDER BY id')])

    def getGroupAgents(self, args):
        name, _, rest = args.partition(" ")
        last, _ = self._lastId(rest)
        ids = self.db.execute(
            'SELECT b.id_agent FROM belongs b JOIN "group" g ON g.id = b.id_group '
            "WHERE g.name = ? AND b.id_agent > ? ORDER BY b.id_agent", (name, last))
        return self._paged(n for (n,) in ids)[0]

    def getDistinctGroups(self, args):
        rows = self.db.execute(
            'SELECT "group", group_hash FROM agent WHERE id > 0 AND group_hash > ? '
            "GROUP BY group_hash ORDER BY group_hash", (args.strip(),))
        return self._paged({"group": g, "group_hash": h} for g, h in rows)[0]

    def _writeGroups(self, number, groups, syncStatus):
        self.db.execute("DELETE FROM belongs WHERE id_agent = ?", (number,))
        for priority, name in enumerate(groups):
            self.db.execute(
                'INSERT INTO belongs (id_group, id_agent, priority) '
                'SELECT id, ?, ? FROM "group" WHERE name = ?', (number, priority, name))
        self.db.execute(
            'UPDATE agent SET "group" = ?, group_hash = ?, group_sync_status = ? WHERE id = ?',
            (",".join(groups) or None, groupHash(groups), syncStatus, number))

    def setAgentGroups(self, args):
        data = self._json(args)
        failure = CommandError("An error occurred during the set of the groups")
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise CommandError("Invalid JSON data, missing required fields")
        mode = data.get("mode", "override")
        syncStatus = data.get("sync_status", "syncreq")
        known = {n for (n,) in self.db.execute('SELECT name FROM "group"')}
        plan = []
        for entry in data["data"]:
            groups = entry.get("groups") if isinstance(entry, dict) else None
            if (not isinstance(groups, list) or type(entry.get("id")) is not int
                    or self.agentRow(entry["id"]) is None or not set(groups) <= known):
                raise failure
            current = self.groupsOf(entry["id"])
            if mode == "append":
                groups = current + [g for g in groups if g not in current]
            elif mode == "empty_only" and current:
                continue
            elif mode not in ("override", "empty_only"):
                raise failure
            plan.append((entry["id"], list(dict.fromkeys(groups))))
        for number, groups in plan:
            self._writeGroups(number, groups, syncStatus)
        return "ok"

    def globalHash(self):
        """
        SHA-1 of every agent's C{group_hash} joined, by ID; L{None} when no
        agent has one.
        """
        hashes = [h for (h,) in self.db.execute(
            "SELECT group_hash FROM agent WHERE id > 0 AND group_hash IS NOT NULL ORDER BY id")]
        return hashlib.sha1("".join(hashes).encode()).hexdigest() if hashes else None

    def syncAgentGroupsGet(self, args):
        request = self._json(args) if args.strip() else {}
        if not isinstance(request, dict):
            raise CommandError("Invalid JSON data, missing required fields")
        condition = request.get("condition")
        last = request.get("last_id", 0)
        where = {"all": "", "sync_status": "AND group_sync_status = 'syncreq'"}.get(condition)
        agents = []
        if where is not None:
            agents = [{"id": n, "name": name, "groups": self.groupsOf(n)} for n, name in
                      self.db.execute(f"SELECT id, name FROM agent WHERE id > ? AND date_add < ? "
                                      f"{where} ORDER BY id", (last, self.now())).fetchall()]
        extra = {}
        if request.get("get_global_hash"):
            extra["hash"] = self.globalHash()
        answer, taken = self._paged(agents, lambda items: compact([{"data": items, **extra}]))
        if request.get("set_synced"):
            self.db.executemany("UPDATE agent SET group_sync_status = 'synced' WHERE id = ?",
                                [(a["id"],) for a in taken])
        return answer

    def recalculateHashes(self, args):
        for (number,) in self.db.execute("SELECT id FROM agent WHERE id > 0").fetchall():
            groups = self.groupsOf(number)
            self.db.execute('UPDATE agent SET "group" = ?, group_hash = ? WHERE id = ?',
                            (",".join(groups) or None, groupHash(groups), number))
        return "ok"
