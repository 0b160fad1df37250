"""Small helpers with side effects that the dispatcher, the slave and the clients share
(``domtool.util``): the one atomic file write (``files.py``) and the one way to run a
coroutine under a ``DeferredLock`` (``locks.py``). Imports neither side
(``tests/test_purity.py``)."""
