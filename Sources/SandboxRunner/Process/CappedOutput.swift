/// The head of a stream up to a cap; the rest is counted, not kept, so memory stays flat
/// however much a script prints.
public struct CappedOutput: Sendable, Equatable {
    public let limit: Int
    public private(set) var head: [UInt8] = []
    public private(set) var totalBytes: Int = 0

    public init(limit: Int) { self.limit = limit }

    public var truncated: Bool { totalBytes > head.count }
    public var text: String { String(decoding: head, as: UTF8.self) }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        totalBytes += bytes.count
        let room = limit - head.count
        if room > 0 { head.append(contentsOf: bytes.prefix(room)) }
    }
}
