import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A descriptor closed exactly once: by `close()` or when the last reference goes.
public final class OwnedFD: @unchecked Sendable {
    public let fd: Int32
    private let lock = NSLock()
    private var open = true
    public init(_ fd: Int32) { self.fd = fd }
    public func close() {
        lock.withLock {
            if open { _ = Glibc.close(fd); open = false }
        }
    }
    deinit { close() }
}
