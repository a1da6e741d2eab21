"""Operations: backups and restore, scheduled backups, metrics (and the standby, privacy tools)."""
