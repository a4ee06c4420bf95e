"""The Xen guest/dom0 ABI as static data, per Xen release: error codes, hypercalls, sub-op
tables, interface versions.

Everything here is written out as Python data rather than parsed from Xen's headers at
import time, because a dom0 in the field may lack libxen-dev; the unit tests compare every
table with each release's headers, kept in tests/unit/data/xen-headers/. ``releases`` says
which releases exist and picks one; the modules' plain names (``domctl.TABLE``) are 4.17's.

Modules: ``releases``, ``errno``, ``hypercalls``, ``domctl``, ``sysctl``, ``memory_op``,
``hvm_op``.
"""

#: The Xen release the modules' unkeyed tables follow (releases.DEFAULT).
XEN_VERSION = "4.17"
