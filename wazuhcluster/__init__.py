"""
wazuhcluster: the Wazuh server cluster rebuilt on Twisted.
"""

__version__ = "4.14.7"

#: Version of the wire protocol (AMP commands and their meaning).  A master
#: accepts workers whose protocol version lies in L{SUPPORTED_PROTOCOLS}.
PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOLS = frozenset({1})
