"""
The wazuhcluster test suite (run with C{trial tests}).

Property-based tests run under one hypothesis profile: no per-example
deadline and no "too slow" health check, since the suite runs on shared,
loaded machines where a slow example says nothing about the code.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "wazuhcluster", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("wazuhcluster")
