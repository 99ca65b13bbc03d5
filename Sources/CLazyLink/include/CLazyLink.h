#ifndef SANDBOX_RUNNER_CLAZYLINK_H
#define SANDBOX_RUNNER_CLAZYLINK_H
#include <stddef.h>

/* Shared libraries loaded on first use rather than at start (symbols.def lists their functions). */
enum {
    SR_LAZY_LIBCURL = 0,
    SR_LAZY_LIBARCHIVE = 1,
    SR_LAZY_LIBSSL = 2,
    SR_LAZY_LIBSECCOMP = 3,
    SR_LAZY_LIBRARY_COUNT = 4
};

/* Loads the library now: 0, or -1 with a full sentence in `err` (what failed, what to install).
   Call it where a missing library can be reported as an error; a function called without it
   loads its library itself and, when it cannot, prints that sentence and exits 69. */
int sr_lazy_require(int lib, char *err, size_t len);

/* 1 once the library is loaded in this process. */
int sr_lazy_loaded(int lib);
#endif
