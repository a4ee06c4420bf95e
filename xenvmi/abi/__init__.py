"""The Xen 4.17 guest/dom0 ABI as static data: error codes, hypercalls, sub-op tables.

Everything here is written out as Python data rather than parsed from Xen's headers at
import time, because a dom0 in the field may lack libxen-dev; the unit tests compare every
table with Debian's /usr/include/xen headers instead.

Modules: ``errno``, ``hypercalls``, ``domctl``, ``sysctl``, ``memory_op``, ``hvm_op``.
"""

#: The Xen release whose public headers these tables follow.
XEN_VERSION = "4.17"
