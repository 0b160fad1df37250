"""What the dispatcher, the slave and the clients share on the network (``domtool.net``):
mutual-TLS contexts (``tls.py``), the authenticated framed session and listener
(``session.py``), renewed TLS files picked up while running (``tlswatch.py``), per-request
revocation checks (``revocation.py``) and the cred pieces both listeners use
(``cred.py``). It imports neither ``domtool.dispatcher`` nor ``domtool.slave``
(``tests/test_purity.py``)."""
