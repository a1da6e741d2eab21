"""Operations: what an operator runs beside ingest and reports — privacy tools (a person's
export and erasure, the privacy notice), the standby that follows a primary."""
