"""
wazuhcluster: the Wazuh server cluster rebuilt on Twisted.
"""

#: The software version every node reports (hello, C{control -l}).
__version__ = "0.1.0"

#: The Wazuh release whose configuration, layout, logs and health fields we
#: stay compatible with.
WAZUH_COMPATIBLE_VERSION = "4.14.7"

#: Version of the wire protocol (AMP commands and their meaning).  A master
#: accepts workers whose protocol version lies in L{SUPPORTED_PROTOCOLS}.
PROTOCOL_VERSION = 2
SUPPORTED_PROTOCOLS = frozenset({2})
