# twistd -ny tapfiles/demo.tac   (WAZUH_DEMO_DIR=./demo, WAZUH_DEMO_WORKERS=2,
#                                  WAZUH_DEMO_PORT=0: a free port)
#
# The demo cluster of 'wazuh-cluster demo' (a master and N workers on
# loopback, in one process), as a .tac file.

import os

from twisted.application.service import Application
from twisted.internet import reactor

from wazuhcluster.demo import buildDemo, createDemo, freePort

base = os.path.abspath(os.environ.get("WAZUH_DEMO_DIR", "demo"))
homes = createDemo(base, int(os.environ.get("WAZUH_DEMO_WORKERS", "2")),
                   int(os.environ.get("WAZUH_DEMO_PORT", "0")) or freePort())
application = Application("wazuh-demo")
buildDemo(homes, reactor).setServiceParent(application)
