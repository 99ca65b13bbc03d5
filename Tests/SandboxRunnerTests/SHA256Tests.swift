import CSystemShims
import Foundation
import Testing
@testable import SandboxRunner

@Suite("SHA-256")
struct SHA256Tests {
    /// Every length from 0 to 300 bytes (each padding case, one and several blocks), a large
    /// input, and the same bytes fed in uneven pieces, against Python's hashlib: the CPU's SHA
    /// extensions where this machine has them, the portable code otherwise.
    @Test func matchesHashlib() throws {
        var inputs: [[UInt8]] = (0...300).map { n in (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) } }
        var rng = SystemRandomNumberGenerator()
        inputs.append((0..<(1 << 20) + 13).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sha-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, bytes) in inputs.enumerated() { try Data(bytes).write(to: dir.appendingPathComponent("\(i)")) }
        let out = try ProcessRunner.runBlocking(ProcessSpec(executable: "/usr/bin/python3", arguments: ["-c", """
            import hashlib, sys, os
            d = sys.argv[1]
            print(" ".join(hashlib.sha256(open(os.path.join(d, str(i)), "rb").read()).hexdigest() for i in range(int(sys.argv[2]))))
            """, dir.path, "\(inputs.count)"], environment: [:], timeout: .seconds(30), outputLimit: 1 << 20), killer: ProcessKiller())
        let expected = out.stdout.text.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(expected.count == inputs.count)
        for (i, bytes) in inputs.enumerated() where i < expected.count {
            #expect(SHA256.hex(bytes) == expected[i], "length \(bytes.count) (accelerated: \(sr_sha256_accelerated()))")
            var pieces = SHA256()
            var at = 0, step = 1
            while at < bytes.count { let end = min(bytes.count, at + step); pieces.update(bytes[at..<end]); at = end; step = step * 3 + 1 }
            #expect(pieces.finalizeHex() == expected[i], "length \(bytes.count) in pieces")
        }
    }
}
