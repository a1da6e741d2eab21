"""What analysts define on a site — goals, funnels, segments — with their validation, their
records, and the background tasks that back-fill them from stored events."""
