import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The local jail's artifact channel: a pipe whose write end the launch passes to the jailed
/// command as descriptor 3, and a thread of its own reading the other end into the receiver
/// while the jail runs (run.py would block on a full pipe otherwise). `finish()` closes the
/// runner's write end; once the jail's processes are gone the reader sees the end of the stream.
final class ArtifactPipe: @unchecked Sendable {
    let writeEnd: Int32
    private let readEnd: Int32
    private let receiver: ArtifactReceiver
    private let condition = NSCondition()
    private var result: ArtifactCollection?
    private var writeOpen = true

    /// nil when no receiver was asked for.
    init?(_ receiver: ArtifactReceiver?) throws {
        guard let receiver else { return nil }
        var fds: [Int32] = [-1, -1]
        guard sr_pipe_cloexec(&fds) == 0 else { throw RunnerError(.internalError, "Could not create a pipe (errno \(errno)).") }
        readEnd = fds[0]
        writeEnd = fds[1]
        self.receiver = receiver
        let thread = Thread { [self] in
            let collected = receiver.consume(fd: readEnd)
            // Closed as soon as the receiver stops (the end, or a refusal such as a limit): a
            // writer still writing gets EPIPE instead of blocking on a full pipe until the timeout.
            close(readEnd)
            condition.lock()
            result = collected
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "sandbox-runner.artifacts"
        thread.start()
    }

    private func closeWriteEnd() {
        condition.lock()
        if writeOpen { close(writeEnd); writeOpen = false }
        condition.unlock()
    }

    /// Closes the runner's copy of the write end and waits for the reader: call it once the run's
    /// processes are gone (their copies are closed then).
    func finish() async -> ArtifactCollection {
        closeWriteEnd()
        return await withCheckedContinuation { (c: CheckedContinuation<ArtifactCollection, Never>) in
            let waiter = Thread { [self] in
                condition.lock()
                while result == nil { condition.wait() }
                let r = result!
                condition.unlock()
                c.resume(returning: r)
            }
            waiter.start()
        }
    }
}
