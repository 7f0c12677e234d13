"""File transports for htpasswd targets, chosen by the target's kind."""
