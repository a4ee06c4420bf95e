"""The TUI's screens: domains (default), one domain, hypercalls, the XenStore browser, help."""
