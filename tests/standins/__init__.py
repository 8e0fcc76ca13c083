# -*- test-case-name: tests.test_standins -*-
"""
Stand-ins for Wazuh's own daemons beside wazuh-clusterd, answering as
wazuh-db and wazuh-authd 4.14.7 answered on this machine kind (the
recordings in C{tests/standins/recordings/}, copied from
C{/work/shared/wazuh-peers/}; C{tests.test_standins} replays them).

Both run in-process (Twisted servers on any endpoint, or on real UNIX
sockets under a home) and as processes::

    python -m tests.standins.wazuhdb --home H     # queue/db/wdb, queue/sockets/wdb-http.sock
    python -m tests.standins.authd --home H       # queue/sockets/auth (needs the wazuh-db one)

Each prints one "... ready" line once it listens and stops on SIGTERM.

What they model (recorded unless marked "source", read from Wazuh's
source, or "chosen", decided here where neither says):

  - wazuh-db's agent table, labels, groups and memberships in SQLite (in
    memory, or C{queue/db/wazuhdb-standin.db} under the home), with the
    columns in the order C{get-agent-info} prints them and nulls left out;
  - C{global} commands: insert-agent, get-all-agents, get-agent-info,
    sync-agent-info-get (only rows marked C{syncreq}; returned rows are
    marked synced at once; C{due} paging with wazuh-db's own cursor when no
    C{last_id} is given), sync-agent-info-set (full rows: a partial one
    fails the recorded NOT NULL constraint; unknown IDs are no-ops; labels
    replaced, FOREIGN KEY error for unknown agents), set-agent-groups (fails
    with the recorded text until every group exists and every agent is
    known; nothing is changed then; C{override}, C{append}, C{empty_only}),
    sync-agent-groups-get (C{condition} C{all} / C{sync_status},
    C{set_synced}, C{get_global_hash}, C{last_id}, agents with
    C{date_add < now} only, C{due} over C{maxResponse} bytes), select-groups,
    get-group-agents, get-distinct-groups (source), recalculate-agent-group-
    hashes, insert-agent-group (a repeated name fails, chosen), delete-agent
    (source), update-connection-status, update-keepalive (sets
    C{last_keepalive} to now), get-agents-by-connection-status; the recorded
    errors of unknown commands and of C{wazuhdb getconfig};
  - C{group_hash} = first 8 hex digits of SHA-256 of the comma-separated
    groups, global hash = SHA-1 of the C{group_hash}es joined by ID (both
    reproduce the recorded values);
  - HTTP: C{GET /v1/agents/ids}, C{/v1/agents/{id}/groups},
    C{/v1/agents/ids/groups}, C{/v1/agents/ids/groups/{group}},
    C{/v1/agents/sync} (three lists by mark, empty ones left out; then every
    agent is marked synced: marks are cleared on read), C{POST
    /v1/agents/summary} (source), C{POST /v1/agents/sync} (WAZUH.md 4.5);
  - authd's C{add} (IDs from client.keys, duplicate name, IP and ID
    errors, groups checked against C{etc/shared/}), C{remove}, C{get}, with
    authd's error codes and texts (source); client.keys written atomically
    and wazuh-db written before the answer (authd answers first and writes
    from another thread: chosen, to keep tests deterministic);
  - failure knobs (L{tests.standins.knobs}): slow answers and connections
    dropped after the request was carried out.

What they do not model: agent 000 (the manager's row), per-agent
databases, C{global sql}, wazuh-db's caching of the global hash, request
bodies over 64 KiB on the classic socket (the connection is closed),
authd's enrollment over TLS, C{force} options and worker mode, and any
timing of the real daemons.
"""
