"""Operations: what an operator runs beside ingest and reports — backups and restore,
scheduled backups, metrics and logs, privacy tools (a person's export and erasure, the privacy
notice), and the standby that follows a primary."""
