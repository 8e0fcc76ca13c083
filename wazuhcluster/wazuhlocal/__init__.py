# -*- test-case-name: tests.test_wazuhlocal_protocol -*-
"""
Wazuh's own local protocol: the framing, commands and JSON encodings that
Wazuh's C{cluster_control}, the Wazuh API and the C daemons (authd's
C{sendsync}) speak on C{queue/cluster/c-internal.sock}.

  - L{wazuhcluster.wazuhlocal.framing}: the pure codec (frames in and out,
    strict bounds);
  - L{wazuhcluster.wazuhlocal.wazuhjson}: Wazuh's JSON encodings of
    exceptions, results and DAPI functions, decoded defensively;
  - L{wazuhcluster.wazuhlocal.protocol}: a Twisted protocol for both sides
    (requests and replies by counter, timeouts, pushed requests, idle and
    payload deadlines), with L{wazuhcluster.wazuhlocal.strings} for the big
    strings (C{new_str}, C{str_upd}) a peer sends;
  - L{wazuhcluster.wazuhlocal.handlers}: what a connection does with the
    requests it does not answer itself (C{ILocalHandler}, C{CommandTable}).

What was observed of Wazuh 4.14.7 is in C{/work/shared/wazuh-peers/}; the
tests replay it byte for byte.
"""
