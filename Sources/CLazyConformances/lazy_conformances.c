#include "CLazyConformances.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

// The Swift runtime's registration record for an image's metadata sections, as the toolchain's
// swiftrt.o fills it (swift/shims/MetadataSections.h of Swift 6.3; version 5, 15 ranges).
// swift_addNewDSOImage reads only the ranges it registers and keeps the pointer for good.
struct sr_section_range { uintptr_t start; size_t length; };
struct sr_metadata_sections {
    uintptr_t version;
    const void *base_address;
    void *unused0;
    void *unused1;
    struct sr_section_range protocols;
    struct sr_section_range protocol_conformances;
    struct sr_section_range rest[13];
};
_Static_assert(sizeof(struct sr_metadata_sections) == 4 * sizeof(void *) + 15 * sizeof(struct sr_section_range),
               "layout of swift::MetadataSections");

extern void swift_addNewDSOImage(struct sr_metadata_sections *sections);

// Defined by the linker when the output section exists; weak, so 0 where it does not.
extern const char __start_swift5_lazy_conformances[] __attribute__((weak, visibility("hidden")));
extern const char __stop_swift5_lazy_conformances[] __attribute__((weak, visibility("hidden")));
extern const char __ehdr_start[] __attribute__((weak, visibility("hidden")));

static struct sr_metadata_sections sections;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static long registered;

long sr_lazy_conformance_count(void) {
    if (!__start_swift5_lazy_conformances || !__stop_swift5_lazy_conformances) return 0;
    return (long)((__stop_swift5_lazy_conformances - __start_swift5_lazy_conformances) / 4);
}

static void register_once(void) {
    long n = sr_lazy_conformance_count();
    if (n == 0) return;
    sections.version = 5;
    sections.base_address = __ehdr_start;
    sections.protocol_conformances.start = (uintptr_t)__start_swift5_lazy_conformances;
    sections.protocol_conformances.length = (size_t)(__stop_swift5_lazy_conformances - __start_swift5_lazy_conformances);
    swift_addNewDSOImage(&sections);
    registered = n;
}

long sr_register_lazy_conformances(void) {
    pthread_once(&once, register_once);
    return registered;
}
