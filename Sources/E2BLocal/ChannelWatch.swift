import Foundation
import NIOCore

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

