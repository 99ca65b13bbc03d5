import Foundation
import NIOCore

/// What a command stream's writer waits for: output, a keepalive tick, the end.
enum StreamItem: Sendable {
    case output(fd: Int32, bytes: [UInt8])
    case tick
    case exited(Result<ProcessOutcomeBox, any Error>)
}

/// ProcessOutcome travels through the stream in a box (Result needs a concrete Success).
struct ProcessOutcomeBox: Sendable {
    var exitCode: Int32
    var signal: Int32?
    var timedOut: Bool
}

/// Carries output from the process runner's reading thread to the HTTP writer in chunks of at
/// most 32 KiB, with backpressure: past `limit` bytes not yet written, the reading thread waits,
/// so a client that reads slowly slows the command instead of growing memory. `close()` releases
/// the thread for good (the stream is ending) and drops what comes after.
final class OutputBridge: @unchecked Sendable {
    static let chunkBytes = 32 * 1024
    private let condition = NSCondition()
    private var pending = 0
    private var closed = false
    private let limit: Int
    private let continuation: AsyncStream<StreamItem>.Continuation

    init(limit: Int = 1 << 20, continuation: AsyncStream<StreamItem>.Continuation) {
        self.limit = limit
        self.continuation = continuation
    }

    /// Called on the reading thread with each chunk the process wrote.
    func push(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let n = min(Self.chunkBytes, bytes.count - offset)
            condition.lock()
            while pending >= limit && !closed { condition.wait() }
            if closed { condition.unlock(); return }
            pending += n
            condition.unlock()
            continuation.yield(.output(fd: fd, bytes: Array(bytes[offset..<(offset + n)])))
            offset += n
        }
    }

    /// The writer has sent `n` bytes onwards.
    func written(_ n: Int) {
        condition.lock()
        pending -= n
        condition.signal()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Waits for a connection to close, or for the waiting task to be cancelled.
enum ChannelWatch {
    static func waitUntilClosed(_ channel: any Channel) async {
        let once = ResumeOnce()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                once.arm(c)
                channel.closeFuture.whenComplete { _ in once.fire() }
            }
        } onCancel: {
            once.fire()
        }
    }
}

/// A continuation resumed exactly once, by whichever comes first.
final class ResumeOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    private var fired = false

    func arm(_ c: CheckedContinuation<Void, Never>) {
        lock.lock()
        if fired { lock.unlock(); c.resume(); return }
        continuation = c
        lock.unlock()
    }

    func fire() {
        lock.lock()
        fired = true
        let c = continuation
        continuation = nil
        lock.unlock()
        c?.resume()
    }
}

/// Sleeps without reacting to cancellation: for teardown that must finish even when cancelled.
func sleepThroughCancellation(milliseconds: Int) async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { c.resume() }
    }
}

/// Sits first in a connection's pipeline while a command streams, and reports the client closing
/// its side (HTTP servers here allow half-closure, so the channel itself stays open) or the
/// connection dropping. Everything passes through unchanged.
final class InputCloseWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let onClose: @Sendable () -> Void

    init(onClose: @escaping @Sendable () -> Void) { self.onClose = onClose }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { onClose() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
        context.fireChannelInactive()
    }
}
