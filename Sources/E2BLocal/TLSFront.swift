import CE2BLocal
import Foundation
import SandboxRunner

/// e2b-local's TLS listener: a small OpenSSL front (CE2BLocal/tls.c) that terminates TLS,
/// offers only HTTP/1.1 by ALPN, and relays each connection to the server's plain listener on a
/// private Unix socket. Its certificates come from `makeCertificates` (a CA and a server
/// certificate for `<domain>`, `*.<domain>`, localhost and the loopback addresses) or the operator.
final class TLSFront: @unchecked Sendable {
    private let handle: OpaquePointer
    let port: Int
    private let lock = NSLock()
    private var stopped = false

    init(host: String, port: Int, tls: E2BLocalConfiguration.TLSFiles, upstream: String) throws {
        try LazyLibrary.require(.ssl)
        var bound: Int32 = 0
        var err = [CChar](repeating: 0, count: 512)
        guard let h = e2bl_tls_start(host, Int32(port), tls.certificateChain, tls.privateKey, upstream, &bound, &err, err.count) else {
            throw RunnerError(.unavailable, "e2b-local could not serve TLS on \(host):\(port): \(String(cString: err))")
        }
        handle = h
        self.port = Int(bound)
    }

    func stop() {
        let first: Bool = lock.withLock { defer { stopped = true }; return !stopped }
        if first { e2bl_tls_stop(handle) }
    }

    deinit { stop() }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` for `domain` into `directory`.
    static func makeCertificates(in directory: String, domain: String) throws -> E2BLocalConfiguration.TLSFiles {
        try LazyLibrary.require(.ssl)
        var err = [CChar](repeating: 0, count: 512)
        guard e2bl_make_certificates(directory, domain, &err, err.count) == 0 else {
            throw RunnerError(.internalError, "e2b-local could not make its TLS certificates in \(directory): \(String(cString: err))")
        }
        return E2BLocalConfiguration.TLSFiles(certificateChain: directory + "/cert.pem", privateKey: directory + "/key.pem")
    }
}
