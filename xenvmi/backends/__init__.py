"""The only package that talks to Xen: xenstore (pyxs), hypervisor metrics (libxenstat).

Everything above this package works on the plain dataclasses these modules return, so it
can be tested with fakes on a machine without Xen.
"""
