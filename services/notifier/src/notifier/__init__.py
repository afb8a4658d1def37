"""The notifier: projects `job.status` into PostgreSQL and serves job progress as
Server-Sent Events with replay (docs/architecture.md §9)."""
