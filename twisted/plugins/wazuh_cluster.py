"""
twistd plugins: C{twistd wazuh-master --home H} and C{twistd wazuh-worker --home H}.
"""

from twisted.application.service import ServiceMaker

wazuhMaster = ServiceMaker(
    "wazuh-master",
    "wazuhcluster.tap_master",
    "Wazuh cluster master node (mutual TLS + AMP).",
    "wazuh-master",
)
wazuhWorker = ServiceMaker(
    "wazuh-worker",
    "wazuhcluster.tap_worker",
    "Wazuh cluster worker node (mutual TLS + AMP).",
    "wazuh-worker",
)
