"""Resumable uploads: the IETF draft (:mod:`.ietf`) and tus 1.0 (:mod:`.tus`) over one
upload resource (:mod:`.uploads`) kept in PostgreSQL (docs/architecture.md §12)."""
