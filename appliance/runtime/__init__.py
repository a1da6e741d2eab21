"""The running appliance: the object that opens storage and composes the rooms as siblings,
and the background jobs it runs."""
