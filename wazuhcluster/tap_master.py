"""
The module behind C{twistd wazuh-master} (ServiceMaker wants C{Options} and
C{makeService} at module level).
"""

from wazuhcluster.tap import Options, makeMasterService as makeService

__all__ = ["Options", "makeService"]
