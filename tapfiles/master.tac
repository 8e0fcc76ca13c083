# twistd -ny tapfiles/master.tac   (WAZUH_HOME=/path/to/node/home, default /var/ossec; WAZUH_DEBUG=1 for debug)
#
# The same master node as 'twistd -n wazuh-master --home HOME', as a .tac file.

from twisted.application.service import Application

from wazuhcluster.tap import applicationFor

application = Application("wazuh-master")
applicationFor("master").setServiceParent(application)
