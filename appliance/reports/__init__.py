"""Saved reports and scheduled reports: what analysts save, and what the appliance sends.

- :mod:`appliance.reports.definitions`: a saved report's definition, its checks and records;
- :mod:`appliance.reports.periods`: relative periods ("last 7 days") resolved to dates;
- :mod:`appliance.reports.running`: a saved report's results, from the stats vocabulary;
- :mod:`appliance.reports.schedules`: schedules (report or dashboard, cadence, hour, URLs);
- :mod:`appliance.reports.cadence`: which period a schedule sends, and when it is due;
- :mod:`appliance.reports.deliveries`: the ledger of sends (the idempotency keys);
- :mod:`appliance.reports.scheduler`: the loop that sends what is due, exactly once.
"""
