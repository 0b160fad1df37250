"""Site policy: ownership, quotas, reserved names, which hosts serve what."""
