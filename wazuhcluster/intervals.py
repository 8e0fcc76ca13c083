# -*- test-case-name: tests.test_config -*-
"""
The C{intervals} section of cluster.json as frozen values: one class per
section (C{worker}, C{master}, C{communication}), one typed field per key,
each field with the kind of value it holds:

  - a I{period} (how often something runs) must be greater than zero;
  - a I{delay} or a I{timeout} may be zero, which means none (no wait, no
    deadline) where the key allows it;
  - a I{count} or a size in I{bytes} is a whole number of at least one;
  - a I{ratio} lies strictly between 0 and 1 (1 allowed);
  - a I{level} is a whole number within the field's range.

Code reads them as attributes: C{items.worker.keep_alive}.
"""

import math

import attrs
from attrs import field, frozen

PERIOD = "period"
DELAY = "delay"
TIMEOUT = "timeout"
LIMIT = "limit"
COUNT = "count"
BYTES = "bytes"
RATIO = "ratio"
LEVEL = "level"


def _kind(kind, low=None, high=None):
    return field(metadata={"kind": kind, "low": low, "high": high})


@frozen
class WorkerIntervals:
    """
    C{intervals.worker} (WAZUH.md section 2.1).
    """

    sync_integrity: float = _kind(PERIOD)
    sync_agent_info: float = _kind(PERIOD)
    sync_agent_groups: float = _kind(PERIOD)
    timeout_agent_groups: float = _kind(TIMEOUT)
    keep_alive: float = _kind(PERIOD)
    connection_retry: float = _kind(PERIOD)
    max_failed_keepalive_attempts: int = _kind(COUNT)
    agent_groups_mismatch_limit: int = _kind(COUNT)


@frozen
class MasterIntervals:
    """
    C{intervals.master} (WAZUH.md section 2.2, plus C{hello_timeout},
    C{max_connections_per_address} and C{max_client_keys_loss}: the largest
    share of its agents a client.keys may lose and still be announced,
    L{wazuhcluster.master.clientkeys_guard}).
    """

    process_pool_size: int = _kind(COUNT)
    sync_agent_groups: float = _kind(PERIOD)
    timeout_extra_valid: float = _kind(TIMEOUT)
    recalculate_integrity: float = _kind(PERIOD)
    timeout_agent_info: float = _kind(TIMEOUT)
    agent_group_start_delay: float = _kind(DELAY)
    check_worker_lastkeepalive: float = _kind(PERIOD)
    max_allowed_time_without_keepalive: float = _kind(LIMIT)
    max_locked_integrity_time: float = _kind(TIMEOUT)
    hello_timeout: float = _kind(LIMIT)
    max_connections_per_address: int = _kind(COUNT)
    max_client_keys_loss: float = _kind(RATIO)


@frozen
class CommunicationIntervals:
    """
    C{intervals.communication} (WAZUH.md section 2.3).
    """

    timeout_cluster_request: float = _kind(TIMEOUT)
    timeout_dapi_request: float = _kind(TIMEOUT)
    timeout_receiving_file: float = _kind(TIMEOUT)
    max_zip_size: int = _kind(BYTES)
    min_zip_size: int = _kind(BYTES)
    compress_level: int = _kind(LEVEL, 0, 9)
    zip_limit_tolerance: float = _kind(RATIO)


SECTIONS = {
    "worker": WorkerIntervals,
    "master": MasterIntervals,
    "communication": CommunicationIntervals,
}


def _isNumber(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _problem(spec, value):
    """
    Why C{value} cannot be the value of the field C{spec}, or L{None}.
    """
    kind = spec.metadata["kind"]
    if not _isNumber(value) or not math.isfinite(value):
        return "must be a number"
    if kind == PERIOD and value <= 0:
        return "is a period and must be a positive number"
    if kind == LIMIT and value <= 0:
        return "is a limit and must be a positive number"
    if kind in (DELAY, TIMEOUT) and value < 0:
        return f"is a {kind} and must be zero (none) or a positive number"
    if kind in (COUNT, BYTES, LEVEL) and value != int(value):
        return "must be a whole number"
    if kind in (COUNT, BYTES) and value < 1:
        return "must be at least 1"
    if kind == LEVEL and not spec.metadata["low"] <= value <= spec.metadata["high"]:
        return (f"must be between {spec.metadata['low']} and "
                f"{spec.metadata['high']}")
    if kind == RATIO and not 0 < value <= 1:
        return "must be greater than 0 and at most 1"
    return None


def buildIntervals(document, error):
    """
    Build the three sections from the merged C{intervals} object.

    @param document: C{{"worker": {...}, "master": {...}, "communication":
        {...}}}, every key present (the shipped file has them all).
    @param error: called with a text, returns the exception to raise.
    @return: C{(worker, master, communication)}.
    """
    built = []
    for section, cls in SECTIONS.items():
        values = document[section]
        kwargs = {}
        for spec in attrs.fields(cls):
            value = values[spec.name]
            problem = _problem(spec, value)
            if problem is not None:
                raise error(
                    f"Interval 'intervals.{section}.{spec.name}' {problem}, "
                    f"found {value!r}"
                )
            kwargs[spec.name] = int(value) if spec.type is int else value
        built.append(cls(**kwargs))
    worker, master, communication = built
    if communication.min_zip_size > communication.max_zip_size:
        raise error("Interval 'intervals.communication.min_zip_size' must not be "
                    "larger than 'max_zip_size'")
    return worker, master, communication
