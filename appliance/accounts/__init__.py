"""Who may do what: users and roles, tokens, API keys, dashboard sessions, and the audit log
of admin actions."""
