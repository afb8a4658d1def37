"""The analyzer-bridge: asks the analysis server to analyse stored audio and turns its
webhooks into events, owning retries and deadlines (docs/architecture.md §1)."""
