import Foundation

/// Connect streaming framing: 1 flag byte, 4-byte big-endian length, then the message.
/// Flag 0x00 = a message, 0x01 = compressed (never asked for), 0x02 = end of stream.
public enum ConnectEnvelope {
    public static let endStreamFlag: UInt8 = 0x02

    public static func encode(_ message: [UInt8], flag: UInt8 = 0) -> [UInt8] {
        let n = UInt32(message.count)
        return [flag, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + message
    }

    /// Decodes envelopes incrementally from chunks of any size; memory is bounded by one message.
    public struct Decoder {
        public static let maxMessageBytes = 16 << 20
        private var buffer: [UInt8] = []
        public init() {}

        public struct Frame { public var flag: UInt8; public var message: [UInt8] }

        /// Feeds bytes; returns the complete frames they finish.
        public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws -> [Frame] {
            buffer.append(contentsOf: bytes)
            var frames: [Frame] = []
            var offset = 0
            while buffer.count - offset >= 5 {
                let len = Int(buffer[offset + 1]) << 24 | Int(buffer[offset + 2]) << 16 | Int(buffer[offset + 3]) << 8 | Int(buffer[offset + 4])
                guard len <= Self.maxMessageBytes else {
                    throw RunnerError(.unavailable, "The sandbox sent a stream message of \(len) bytes, over the \(Self.maxMessageBytes)-byte limit.")
                }
                guard buffer.count - offset - 5 >= len else { break }
                frames.append(Frame(flag: buffer[offset], message: Array(buffer[(offset + 5)..<(offset + 5 + len)])))
                offset += 5 + len
            }
            if offset > 0 { buffer.removeFirst(offset) }
            return frames
        }

        /// Bytes of an unfinished frame (non-zero when a stream was cut mid-message).
        public var pending: Int { buffer.count }
    }
}
