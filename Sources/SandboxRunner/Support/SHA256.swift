import CSystemShims

/// SHA-256 (FIPS 180-4), incremental; the compression runs in C (CSystemShims), fast even in a
/// debug build (artifacts of hundreds of MiB are hashed as they arrive). No dependency needed.
public struct SHA256: Sendable {
    private var ctx = sr_sha256_ctx()

    public init() { sr_sha256_init(&ctx) }

    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var s = SHA256()
        s.update(bytes)
        return s.finalizeHex()
    }

    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        let done: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            sr_sha256_update(&ctx, buffer.baseAddress, buffer.count)
        }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBufferPointer { sr_sha256_update(&ctx, $0.baseAddress, $0.count) }
        }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        sr_sha256_update(&ctx, bytes.baseAddress, bytes.count)
    }

    /// The 32-byte digest; the state starts over.
    public mutating func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        digest.withUnsafeMutableBufferPointer { sr_sha256_final(&ctx, $0.baseAddress) }
        sr_sha256_init(&ctx)
        return digest
    }

    public static func digest<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var s = SHA256()
        s.update(bytes)
        return s.finalize()
    }

    public mutating func finalizeHex() -> String {
        let digest = finalize()
        let digits = Array("0123456789abcdef")
        var out = ""
        out.reserveCapacity(64)
        for b in digest {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return out
    }
}
