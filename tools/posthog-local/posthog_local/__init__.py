"""posthog-local: a PostHog-compatible HTTP server over DuckDB with a deterministic dataset.

Modules:
    config     settings and keys from the environment (shown masked), scopes
    timeutil   epoch-millisecond helpers and the wire's timestamp format
    flags      PostHog flag hashing and evaluation
    dataset    the dataset as Python rows (what the truths read)
    generator  the seeded dataset (and the bulk export dataset), the cached data directory
    truths     the 14 templates' true answers, computed in plain Python
    hogql_check PostHog's parser (hogql-parser) and function registry (hogql_functions.json): refusals
    hogql      HogQL (ClickHouse dialect) -> DuckDB SQL with bound placeholders, ClickHouse semantics
    store      the in-memory DuckDB database: load, query, capture writes, definitions
    capture    decoding and validating capture payloads
    resources  flags, cohorts, insights, experiments, persons behind the private API
    limits     PostHog's query rate, concurrency, execution time, cohort batch and body limits
    queries    refresh modes, the query cache and async queries
    faults     fault injection specs and request statistics
    app        routing, auth and PostHog's answer shapes (no sockets)
    httpd      the threading HTTP/1.1 server and fault delivery
    cli        serve / truth / generate
"""

__version__ = "1.0.0"
