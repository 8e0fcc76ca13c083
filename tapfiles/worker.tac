# twistd -ny tapfiles/worker.tac   (WAZUH_HOME=/path/to/node/home, default /var/ossec; WAZUH_DEBUG=1 for debug)
#
# The same worker node as 'twistd -n wazuh-worker --home HOME', as a .tac file.

from twisted.application.service import Application

from wazuhcluster.tap import applicationFor

application = Application("wazuh-worker")
applicationFor("worker").setServiceParent(application)
