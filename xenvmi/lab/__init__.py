"""The lab: a real Xen 4.17 host in a nested VM (QEMU TCG here, Vagrant with hardware virt).

Host side (paths, image, vm, remote) builds and drives the VM; ``dom0`` and ``groundtruth``
run inside dom0 with the standard library only, so they work before any venv exists.
"""
