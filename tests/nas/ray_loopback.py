"""Run the ``ray`` command line with every node kept on the loopback interface (127.0.0.1).

Ray replaces 127.0.0.1 by the machine's routable address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, and that same switch refuses to start a
worker node. The tests' processes run with the switch at 0 (so every Ray
process resolves its address to 127.0.0.1); this launcher lets ``ray start``
add a worker node all the same, pinned to 127.0.0.1.
"""

import sys

import ray._private.ray_constants as constants
import ray._private.services as services

constants.ENABLE_RAY_CLUSTER = True  # allow `ray start --address=...` (a worker node)
services.get_node_ip_address = lambda address=None: "127.0.0.1"
services.resolve_ip_for_localhost = lambda host: host

from ray.scripts.scripts import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
