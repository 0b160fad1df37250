"""Tests of the dispatcher: CA, TLS front door, authentication, store, request schema."""
