"""
The master's features: each entry builds one feature service for a
L{wazuhcluster.master.server.MasterService} (see C{MasterService.addFeature}).
"""


def masterFeatures():
    """
    The feature factories every master runs, in start order.
    """
    return []
