#!/usr/bin/python3
"""Write the daemons' site files named by a slave.toml (default /etc/domtool/slave.toml):
BIND base.conf, named.conf and rndc.conf (a new rndc key), Apache base.conf and
apache2.conf, and Exim's /etc/exim4/exim4.conf (0644), for the backends it enables; and an
empty first generation in its state_dir so named and Apache can start before the first
apply. Run once as root on a slave host (docs/deploy.md); it overwrites those files. BIND's
files are root:bind 0640 (they hold the rndc key), Apache's root 0640. The work is
``domtool.slave.sitefiles``."""

import sys

from domtool.slave import sitefiles

sys.exit(sitefiles.main(sys.argv[1:]))
