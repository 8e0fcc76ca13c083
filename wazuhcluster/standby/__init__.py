# -*- test-case-name: tests.test_standby_cluster,tests.test_standby_lock,tests.test_failover -*-
"""
Masters in standby (DESIGN.md, "Masters in standby").

Several master candidates of one cluster share one PostgreSQL database
(C{agent_store.backend} C{postgresql}).  Exactly one is active: the one
holding the PostgreSQL advisory lock keyed by the cluster name, on a session
of its own.  The others stand by: they refuse every hello with a refusal
naming the active master, and keep their synced files the active master's
by syncing from it as a worker does.  Workers list every candidate in
C{<nodes>} and go to whichever answers as active.

The modules, in the order things happen:

  - L{items}: the C{masters} section of cluster.json, and the window;
  - L{locksession}, L{lockthread}: the lock session (one connection, one
    thread);
  - L{arbiter}: the role, decided by the lock alone;
  - L{service}: the master's part (promote, demote, the link);
  - L{link}: a standby's connection to the active master;
  - L{peers}: standbys as peers of the active master;
  - L{role}: the values, and the standby's refusal (error 3064);
  - L{candidates}: how workers (and links) find the active master;
  - L{control}: roles in C{control}'s answers, C{switchover} (error 3065);
  - L{initoptions}, L{switchover}: C{init --nodes/--database}, the
    C{switchover} command.

The window during which two masters may both believe they are active
--------------------------------------------------------------------

With I = C{masters.lock_check_interval}, T = C{masters.lock_check_timeout}
and P = C{masters.lock_poll_interval} (2, 3 and 2 s by default):

  - The active master checks its session every I seconds, and a check that
    fails, finds the lock gone or takes more than T seconds stops it serving
    at once.  So a master stops serving at most W = I + T seconds (5 s)
    after the last moment its session was known to hold the lock: W bounds
    the time two masters may both believe they are active, whatever
    happened (L{items.overlapWindow}).
  - The server ends the session (the master was killed, its backend
    terminated, the server restarted): the lock is free at once and a
    standby may take it at its next poll; the former active master's next
    check, at most I seconds later, fails at once on the closed connection.
    Overlap: at most I, within W.
  - The network between the active master and the server goes silent: the
    master's check gets no answer and it stops serving within W, then cuts
    its socket.  The server, which cannot hear that, keeps the lock until
    its TCP keep-alives give the silent session up.  The lock session sets
    them (C{tcp_keepalives_idle} = ceil(W), C{tcp_keepalives_interval} =
    ceil(I), C{tcp_keepalives_count} = 3: D = 11 s by default,
    L{items.serverRelease}), always more than W: no overlap at all, and a
    standby serves within D + P (13 s).
  - The client-side TCP settings the agent store uses
    (L{wazuhcluster.agentdb.postgres.TCP_SETTINGS}: keep-alives after 10 s,
    C{tcp_user_timeout} 15 s, lowered to T on the lock session) only bound
    how long the lock session's thread can stay blocked on a dead socket if
    cutting it did not end the call; they never lengthen W, because the
    decision to stop serving does not wait for the thread.
  - What an overlap can cost: agent-info rows and group assignments written
    by both masters to the shared store, which serialises every writer with
    its own advisory lock, so nothing is torn or lost; each worker is
    served by one master at a time.
"""
