"""Service plumbing shared by every audiopipe service: settings blocks, the Kafka broker
and CloudEvents envelopes, the S3 client, PostgreSQL pools, HTTP errors, logs, metrics,
traces, tokens, webhook signatures and the one start path. Nothing here knows a
service's rules. What each module is for: ``libs/servicekit/README.md``; each module's
``__all__`` is what it offers. Import the modules (``from servicekit.kafka import
make_broker``); the package itself exports nothing.
"""

__all__: list[str] = []
