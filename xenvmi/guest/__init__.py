"""Guest kernel introspection: parsing what a guest kernel keeps in its own memory."""
