#ifndef SANDBOX_RUNNER_CARCHIVE_SHIM_H
#define SANDBOX_RUNNER_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>
#endif
