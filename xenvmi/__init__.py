"""xenvmi: inspect and trace live Xen domains from dom0."""

__version__ = "0.2.0"
