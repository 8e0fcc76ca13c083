# -*- test-case-name: tests.test_localserver -*-
"""
The node's local server: C{queue/cluster/c-internal.sock} in Wazuh's own
local framing (L{wazuhcluster.wazuhlocal}), so that Wazuh's
C{cluster_control}, the Wazuh API's cluster endpoints and the C daemons'
C{sendsync} (authd enrolling an agent on a worker) work with this node as
they work with C{wazuh-clusterd} (DESIGN.md, "Beside a Wazuh manager");
C{wazuh-cluster control} and the C{agent} commands are clients of the same
protocol.

  - L{wazuhcluster.localserver.base}: what both nodes answer (C{get_config},
    C{get_hash}, this project's own requests);
  - L{wazuhcluster.localserver.master}: the master's commands (C{get_nodes},
    C{get_health}, C{dapi}, C{dapi_fwd});
  - L{wazuhcluster.localserver.worker}: the worker's (C{get_nodes} and
    C{get_health} forwarded to the master and pushed back as
    C{control_res}; C{dapi}; C{sendsync}, C{sendasync}, C{sendrreload});
  - L{wazuhcluster.localserver.relay}: the master's side of C{sendsync}
    (the worker's daemon request handed to the master's authd);
  - L{wazuhcluster.localserver.shapes}: Wazuh's request arguments and
    answer shapes (C{{"items": [...], "totalItems": N}});
  - L{wazuhcluster.localserver.dapi}: the distributed API calls answered
    from this project's own data, and how their results are pushed.

The server itself (socket, bounds, clients) is
L{wazuhcluster.control.ControlServer}.
"""
