"""Plugin hooks: the specifications plugins implement (``specs``) and the per-appliance
plugin manager that loads built-in, entry-point and folder plugins (``manager``)."""
