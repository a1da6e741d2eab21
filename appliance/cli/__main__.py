"""``python -m appliance.cli``: the ``footfall`` command."""

import sys

from appliance.cli.commands import main

sys.exit(main())
