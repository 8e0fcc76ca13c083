"""
The worker's features: each entry builds one feature service for a
L{wazuhcluster.worker.client.WorkerService} (see C{WorkerService.addFeature}).
"""


def workerFeatures():
    """
    The feature factories every worker runs, in start order.
    """
    from wazuhcluster.worker.agents import makeWorkerAgents
    from wazuhcluster.worker.integrity_sync import IntegrityWorker

    return [IntegrityWorker, makeWorkerAgents]
