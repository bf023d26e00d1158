#!/bin/sh
# Stands in for ssh in the launcher test: `netns_shell.sh HOST COMMAND` runs
# COMMAND (one string, as ssh passes it to the remote shell) inside network
# namespace HOST, a host of the test's own virtual network.
host="$1"
shift
exec ip netns exec "$host" sh -c "$*"
