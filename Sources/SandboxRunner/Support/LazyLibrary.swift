import CLazyLink

/// The shared libraries the binary loads on first use instead of at start (CLazyLink): most
/// commands need none of them, and libcurl alone brings ~30 more. Code that can report a missing
/// library as an error calls `require` first; a call without it that finds the library missing
/// prints the same sentence and exits 69.
public enum LazyLibrary: Int32, CaseIterable, Sendable {
    case curl = 0
    case archive = 1
    case ssl = 2
    case seccomp = 3

    /// Loads the library now, or throws `.unavailable` naming it and the package to install.
    public static func require(_ library: LazyLibrary) throws {
        var err = [CChar](repeating: 0, count: 512)
        guard sr_lazy_require(library.rawValue, &err, err.count) == 0 else {
            throw RunnerError(.unavailable, String(cString: err))
        }
    }

    /// Loads every library now, ignoring the missing (a run that needs one says so when it does).
    /// For long-lived servers (`serve`, `mcp`, `e2b-local`): start-up time does not matter there,
    /// and a library loaded on first use would need a descriptor just when a server near its
    /// descriptor limit may have none to spare.
    public static func preloadAll() {
        for library in allCases { try? require(library) }
    }

    /// True once this process has loaded the library.
    public var isLoaded: Bool { sr_lazy_loaded(rawValue) != 0 }
}
