"""
The module behind C{twistd wazuh-worker} (ServiceMaker wants C{Options} and
C{makeService} at module level).
"""

from wazuhcluster.tap import Options
from wazuhcluster.tap import makeWorkerService as makeService

__all__ = ["Options", "makeService"]
