"""The dispatcher: TLS front door, store, policy, planning and two-phase apply."""
