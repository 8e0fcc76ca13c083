# -*- test-case-name: tests.test_wazuhdb_client -*-
"""
The errors of Wazuh's local daemons, with Wazuh's codes and texts
(framework/wazuh/core/exception.py).
"""

from wazuhcluster.errors import ClusterError

#: Wazuh's texts of the wazuh-db codes (2000-2099) and of authd's (1725-1726).
TEXTS = {
    1725: "Error registering a new agent",
    1726: "Wazuh authd is not running",
    2003: "Error in wazuhdb request",
    2005: "Could not connect to wdb socket",
    2006: "Received JSON from Wazuh DB is not correctly formatted",
    2007: "Error retrieving data from Wazuh DB",
    2009: "Pagination error. Response from wazuh-db was over the maximum socket buffer size",
    2010: "The requested read operation did not complete fully",
    2011: "Could not connect to the wazuh-db unix socket",
    2012: "Invalid wazuh-db HTTP request",
    2013: "Error sending HTTP request",
    2014: "The wazuh-db client connection timeout has been exceeded",
}

#: Codes.
REQUEST_ERROR = 2003
CONNECT_ERROR = 2005
JSON_ERROR = 2006
RETRIEVE_ERROR = 2007
TOO_LARGE_ERROR = 2009
INCOMPLETE_ERROR = 2010
HTTP_CONNECT_ERROR = 2011
HTTP_STATUS_ERROR = 2012
HTTP_SEND_ERROR = 2013
TIMEOUT_ERROR = 2014
AUTHD_DOWN = 1726


class WazuhDBError(ClusterError):
    """
    wazuh-db answered C{err}, or could not be reached or understood.

    @ivar detail: wazuh-db's own message (C{err <message>}), or what went
        wrong.
    """

    code = REQUEST_ERROR

    def __init__(self, detail=None, code=REQUEST_ERROR):
        base = TEXTS.get(code)
        if base and detail:
            message = f"{base}: {detail}"
        else:
            message = base or detail or f"wazuh-db error {code}"
        super().__init__(message, code)
        self.detail = detail


class AuthdError(ClusterError):
    """
    authd answered an error (C{{"error": 9008, "message": "Duplicate
    name"}}), printed as Wazuh prints it: C{Error 9008 - Duplicate name}; or
    authd could not be reached (1726).
    """

    def __init__(self, message, code=AUTHD_DOWN):
        base = TEXTS.get(code)
        if base and code == AUTHD_DOWN:
            message = f"{base}: {message}" if message else base
        super().__init__(message, code)
