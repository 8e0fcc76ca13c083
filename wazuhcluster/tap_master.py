"""
The module behind C{twistd wazuh-master} (ServiceMaker wants C{Options} and
C{makeService} at module level).
"""

from wazuhcluster.tap import Options
from wazuhcluster.tap import makeMasterService as makeService

__all__ = ["Options", "makeService"]
