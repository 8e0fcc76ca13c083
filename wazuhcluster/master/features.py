"""
The master's features: each entry builds one feature service for a
L{wazuhcluster.master.server.MasterService} (see C{MasterService.addFeature}).
"""


def masterFeatures():
    """
    The feature factories every master runs, in start order.
    """
    from wazuhcluster.master.agents import makeMasterAgents
    from wazuhcluster.master.integrity_sync import IntegrityMaster

    return [IntegrityMaster, makeMasterAgents]
