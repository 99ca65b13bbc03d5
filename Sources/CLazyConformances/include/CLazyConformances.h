#ifndef SANDBOX_RUNNER_LAZY_CONFORMANCES_H
#define SANDBOX_RUNNER_LAZY_CONFORMANCES_H

/// Hands the server modules' protocol-conformance records to the Swift runtime. The release and
/// debug links of the executable put them in a section of their own (`lazy-conformances.ld`), out
/// of the runtime's sight: every failed conformance lookup of a CLI command scans all records the
/// runtime knows, and these are a third of the binary's. `serve`, `mcp` and `e2b-local` call this
/// first, before any code of those modules runs. Idempotent and thread-safe. Returns the number of
/// records registered now or before (0 where the link made no such section, e.g. test bundles).
long sr_register_lazy_conformances(void);

/// The number of records in that section, registered or not (0 without the section).
long sr_lazy_conformance_count(void);

#endif
