/* The other half of stubs.S: which library each stub's function lives in, loading it on first
   use, and the clear failure when it is missing (the one a dynamic loader would have given at
   start, but now only for a command that needs the library). */
#define _GNU_SOURCE
#include "CLazyLink.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const sr_lazy_names[] = {
#define SR_LAZY(lib, name) #name,
#include "symbols.def"
#undef SR_LAZY
};

static const unsigned char sr_lazy_libs[] = {
#define SR_LAZY(lib, name) lib,
#include "symbols.def"
#undef SR_LAZY
};

#define SR_LAZY_COUNT (sizeof sr_lazy_names / sizeof sr_lazy_names[0])

/* Resolved addresses, read by the stubs (zero until resolved). */
__attribute__((visibility("hidden"))) void *sr_lazy_slots[SR_LAZY_COUNT];

static const struct {
    const char *soname;
    const char *package;
    const char *purpose;
} sr_lazy_libraries[SR_LAZY_LIBRARY_COUNT] = {
    [SR_LAZY_LIBCURL] = {"libcurl.so.4", "libcurl4", "HTTP (E2B, the egress proxy, PostHog checks)"},
    [SR_LAZY_LIBARCHIVE] = {"libarchive.so.13", "libarchive13", "run bundles"},
    [SR_LAZY_LIBSSL] = {"libssl.so.3", "libssl3", "e2b-local's TLS front"},
    [SR_LAZY_LIBSECCOMP] = {"libseccomp.so.2", "libseccomp2", "the jail's seccomp filter"},
};

static void *sr_lazy_handles[SR_LAZY_LIBRARY_COUNT];
static pthread_mutex_t sr_lazy_lock = PTHREAD_MUTEX_INITIALIZER;

static void sr_lazy_message(int lib, const char *why, char *out, size_t len) {
    snprintf(out, len,
             "sandbox-runner could not load %s, which it needs for %s (%s); install it (apt-get install %s) and try again.",
             sr_lazy_libraries[lib].soname, sr_lazy_libraries[lib].purpose, why ? why : "unknown error",
             sr_lazy_libraries[lib].package);
}

static void *sr_lazy_open(int lib, char *err, size_t len) {
    void *h = __atomic_load_n(&sr_lazy_handles[lib], __ATOMIC_ACQUIRE);
    if (h) return h;
    pthread_mutex_lock(&sr_lazy_lock);
    h = sr_lazy_handles[lib];
    if (!h) {
        h = dlopen(sr_lazy_libraries[lib].soname, RTLD_NOW | RTLD_LOCAL);
        if (h) {
            __atomic_store_n(&sr_lazy_handles[lib], h, __ATOMIC_RELEASE);
        } else if (err) {
            sr_lazy_message(lib, dlerror(), err, len);
        }
    }
    pthread_mutex_unlock(&sr_lazy_lock);
    return h;
}

int sr_lazy_require(int lib, char *err, size_t len) {
    if (lib < 0 || lib >= SR_LAZY_LIBRARY_COUNT) return -1;
    return sr_lazy_open(lib, err, len) ? 0 : -1;
}

int sr_lazy_loaded(int lib) {
    if (lib < 0 || lib >= SR_LAZY_LIBRARY_COUNT) return 0;
    return __atomic_load_n(&sr_lazy_handles[lib], __ATOMIC_ACQUIRE) != NULL;
}

/* Called by a stub that found its slot empty. A library that cannot be loaded here (the callers
   check with sr_lazy_require first where they can say so as an error) ends the process with the
   message, as the dynamic loader would have at start. */
__attribute__((visibility("hidden"))) void *sr_lazy_resolve(unsigned index) {
    char err[512];
    int lib = sr_lazy_libs[index];
    void *h = sr_lazy_open(lib, err, sizeof err);
    if (!h) {
        dprintf(STDERR_FILENO, "%s\n", err);
        _exit(69);
    }
    void *f = dlsym(h, sr_lazy_names[index]);
    if (!f) {
        char why[256];
        snprintf(why, sizeof why, "it has no function %s", sr_lazy_names[index]);
        sr_lazy_message(lib, why, err, sizeof err);
        dprintf(STDERR_FILENO, "%s\n", err);
        _exit(69);
    }
    __atomic_store_n(&sr_lazy_slots[index], f, __ATOMIC_RELEASE);
    return f;
}
