import Foundation

/// The entries of a bundle, to be put into a jail's tmpfs by bubblewrap (`--dir`, `--file FD`)
/// straight from memory: no archive is made or unpacked for a local run.
struct BundleFiles {
    typealias Entry = RunBundle.Entry

    var entries: [Entry] = []

    /// The bundle's entries, refusing absolute paths, empty, `.` and `..` components (each path
    /// becomes a bubblewrap destination under the jail's home).
    static func read(_ bundle: RunBundle) throws -> BundleFiles {
        for entry in bundle.contents {
            let name = entry.path
            let parts = name.split(separator: "/", omittingEmptySubsequences: false)
            guard !name.isEmpty, !name.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == ".." || $0 == "." }) else {
                throw RunnerError(.badInput, "The bundle holds an unsafe path: \(name).")
            }
        }
        return BundleFiles(entries: bundle.contents)
    }
}
