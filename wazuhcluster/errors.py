# -*- test-case-name: tests.test_config -*-
"""
Errors with the original's numbers and texts.

Every error a user or a peer can cause is a L{ClusterError}: it carries the
Wazuh error code and prints as C{Error <code> - <message>}, the way Wazuh's
own tools print them.
"""


class ClusterError(Exception):
    """
    An error with a Wazuh error code.

    @ivar code: the Wazuh error number (e.g. 3004).
    @ivar message: the human-readable text.
    """

    code = 1000
    message = "Wazuh Internal Error"

    def __init__(self, message=None, code=None):
        if code is not None:
            self.code = code
        if message is not None:
            self.message = message
        super().__init__(self.code, self.message)

    def __str__(self):
        return f"Error {self.code} - {self.message}"


class ConfigError(ClusterError):
    """
    The cluster configuration is invalid (3004) or unreadable (3006).
    """

    code = 3004

    def __init__(self, detail, code=3004):
        if code == 3004:
            message = f"Error in cluster configuration: {detail}"
        else:
            message = detail
        super().__init__(message, code)
        self.detail = detail


class StartupError(SystemExit):
    """
    A node cannot start; the reason was already told to the user (one line on
    stderr and in cluster.log).  Exits with status 1 without a traceback.
    """

    def __init__(self):
        super().__init__(1)
